"""ε of Gaussian releases: Opacus's RDP accountant, composition, noise calibration,
and the Gaussian mechanism on a task vector (its clipping, noise and sensitivity)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from silorec.privacy import (
    GaussianSteps,
    PrivacyAccountingError,
    calibrate_noise_multiplier,
    epsilon,
    gaussian_release_steps,
    gaussian_task_vector_release,
)
from silorec.privacy.accounting import RDP_ORDERS
from silorec.privacy.gaussian import l2_sensitivity, task_vector_norm


@pytest.mark.parametrize(
    ("sigma", "rate", "steps", "delta"),
    [(1.1, 256 / 60_000, 14_040, 1e-5), (1.0, 0.01, 1000, 1e-5), (0.8, 1.0, 3, 1e-3)],
    ids=["mnist-like", "one-percent", "full-batch"],
)
def test_epsilon_is_opacus_rdp_accountant(sigma: float, rate: float, steps: int, delta: float):
    accountant = RDPAccountant()
    for _ in range(steps):
        accountant.step(noise_multiplier=sigma, sample_rate=rate)
    ours = epsilon([GaussianSteps(sigma, rate, steps)], delta)
    assert ours == pytest.approx(accountant.get_epsilon(delta, alphas=list(RDP_ORDERS)))
    # More orders than Opacus's defaults only tighten the bound.
    assert ours <= accountant.get_epsilon(delta) + 1e-9


def test_single_gaussian_release_matches_the_closed_form() -> None:
    """One Gaussian mechanism with noise multiplier σ has RDP α / (2σ²); ε is the
    best conversion over the orders (Balle et al. 2020, as Opacus does)."""
    sigma, delta = 3.0, 1e-5
    orders = np.array(RDP_ORDERS)
    closed = (orders / (2 * sigma**2) - (np.log(delta) + np.log(orders)) / (orders - 1)
              + np.log((orders - 1) / orders))  # fmt: skip
    assert epsilon([gaussian_release_steps(sigma)], delta) == pytest.approx(closed.min())


def test_composition_adds_rdp() -> None:
    """k Gaussian releases at σ cost exactly one release at σ / √k (RDP adds), and the
    order of releases does not matter."""
    sigma, k, delta = 4.0, 5, 1e-5
    composed = epsilon([gaussian_release_steps(sigma)] * k, delta)
    assert composed == pytest.approx(epsilon([gaussian_release_steps(sigma / math.sqrt(k))], delta))
    mixed = [GaussianSteps(1.0, 0.02, 100), GaussianSteps(2.0, 1.0, 1)]
    assert epsilon(mixed, delta) == pytest.approx(epsilon(mixed[::-1], delta))
    assert epsilon(mixed, delta) > max(epsilon([m], delta) for m in mixed)


def test_no_release_costs_nothing_and_no_noise_costs_everything() -> None:
    assert epsilon([], 1e-5) == 0.0
    assert epsilon([GaussianSteps(1.0, 0.5, 0)], 1e-5) == 0.0
    assert epsilon([GaussianSteps(1.0, 0.5, 10), GaussianSteps(0.0, 1.0, 1)], 1e-5) == math.inf


@pytest.mark.parametrize("bad", [dict(noise_multiplier=-1.0), dict(sample_rate=0.0),
                                 dict(sample_rate=1.5), dict(steps=-1)])  # fmt: skip
def test_invalid_gaussian_steps_are_rejected(bad: dict) -> None:
    values = {"noise_multiplier": 1.0, "sample_rate": 0.5, "steps": 1, **bad}
    with pytest.raises(PrivacyAccountingError, match=next(iter(bad)).replace("_", " ")):
        GaussianSteps(**values)
    with pytest.raises(PrivacyAccountingError, match="delta"):
        epsilon([], 1.5)


@pytest.mark.parametrize(("target", "rate", "steps"), [(2.0, 0.02, 200), (4.0, 1.0, 3)])
def test_calibrated_noise_reaches_the_target_epsilon(target: float, rate: float, steps: int):
    delta = 1e-4
    sigma = calibrate_noise_multiplier(target, delta, rate, steps)
    assert epsilon([GaussianSteps(sigma, rate, steps)], delta) <= target
    assert epsilon([GaussianSteps(sigma, rate, steps)], delta) > target - 0.05
    assert epsilon([GaussianSteps(0.97 * sigma, rate, steps)], delta) > target


def test_an_unreachable_target_is_a_clear_error() -> None:
    with pytest.raises(PrivacyAccountingError, match="no noise multiplier reaches ε = 1e-09"):
        calibrate_noise_multiplier(1e-9, 1e-5, 1.0, 1)


# -- the Gaussian mechanism on the task vector ------------------------------------------


def weights_pair(scale: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    base = {"a": rng.normal(size=(50, 40)).astype(np.float32),
            "b": rng.normal(size=(100,)).astype(np.float32)}  # fmt: skip
    trained = {n: (w + scale * rng.normal(size=w.shape)).astype(np.float32)
               for n, w in base.items()}  # fmt: skip
    return base, trained


def test_task_vector_is_clipped_to_the_norm_and_small_ones_are_kept() -> None:
    base, trained = weights_pair(scale=0.1)
    assert task_vector_norm(base, trained) > 2.0
    clipped = gaussian_task_vector_release(base, trained, clip_norm=2.0, noise_multiplier=0.0)
    assert task_vector_norm(base, clipped) == pytest.approx(2.0, rel=1e-4)
    direction = clipped["a"] - base["a"]
    cosine = np.sum(direction * (trained["a"] - base["a"])) / (
        np.linalg.norm(direction) * np.linalg.norm(trained["a"] - base["a"]))  # fmt: skip
    assert cosine == pytest.approx(1.0, abs=1e-5)
    kept = gaussian_task_vector_release(base, trained, clip_norm=100.0, noise_multiplier=0.0)
    for name in base:
        np.testing.assert_allclose(kept[name], trained[name], atol=1e-6)
        assert kept[name].dtype == np.float32


def test_noise_standard_deviation_is_sigma_times_twice_the_clip_norm() -> None:
    """Sensitivity, replace-one: two clipped task vectors differ by at most 2C."""
    assert l2_sensitivity(0.5) == 1.0
    base, trained = weights_pair(scale=0.0)
    released = gaussian_task_vector_release(base, trained, clip_norm=0.5, noise_multiplier=3.0,
                                            rng=np.random.default_rng(1))  # fmt: skip
    noise = np.concatenate([(released[n] - base[n]).ravel() for n in base])
    assert np.std(noise) == pytest.approx(3.0 * 2 * 0.5, rel=0.03)


def test_gaussian_release_epsilon_and_calibration() -> None:
    """One release is one Gaussian step at rate 1; calibrating σ for a target ε over
    the planned releases reaches it."""
    steps = gaussian_release_steps(2.0)
    assert (steps.noise_multiplier, steps.sample_rate, steps.steps) == (2.0, 1.0, 1)
    sigma = calibrate_noise_multiplier(1.0, 1e-5, 1.0, 2)
    assert epsilon([gaussian_release_steps(sigma)] * 2, 1e-5) == pytest.approx(1.0, abs=0.011)
