"""ε of Gaussian releases, composed with Rényi DP (Opacus's RDP accountant).

Every private release silorec makes is a (possibly subsampled) Gaussian mechanism:
DP-SGD is ``steps`` Poisson-subsampled Gaussian steps at rate ``q``; the Gaussian
mechanism on a task vector is one step at rate 1. Either is described by
:class:`GaussianSteps` (noise multiplier = noise standard deviation / L2 sensitivity),
and any list of them composes by adding their RDP curves, which is what the ledger
does across a run's releases.

Opacus is imported lazily: importing it loads all of Opacus (about 2.5 s), which a
node without differential privacy should not pay.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

#: RDP orders searched for the tightest (ε, δ) conversion: Opacus's defaults
#: (1.1 .. 63) extended, sparsely, to large orders, which a single strongly-noised
#: release (the Gaussian mechanism at small ε) needs. Any order gives a valid bound;
#: more orders only make it tighter (and each costs time for subsampled steps).
RDP_ORDERS: tuple[float, ...] = (
    *(1 + x / 10.0 for x in range(1, 100)),
    *range(12, 64),
    *range(64, 257, 8),
    *(320, 384, 448, 512, 768, 1024),
)


class PrivacyAccountingError(ValueError):
    """Accounting asked for something impossible (e.g. an ε no noise can reach)."""


@dataclass(frozen=True)
class GaussianSteps:
    """``steps`` applications of a Gaussian mechanism with noise standard deviation
    ``noise_multiplier`` x its L2 sensitivity, each on a Poisson sample of the data at
    ``sample_rate`` (1 = every record). ``noise_multiplier == 0`` is no privacy."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0:
            raise PrivacyAccountingError(
                f"noise multiplier must be >= 0, got {self.noise_multiplier}"
            )
        if not 0 < self.sample_rate <= 1:
            raise PrivacyAccountingError(f"sample rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 0:
            raise PrivacyAccountingError(f"steps must be >= 0, got {self.steps}")

    @property
    def private(self) -> bool:
        """False for a release without noise (ε = ∞)."""
        return self.noise_multiplier > 0 or self.steps == 0


def epsilon(history: Sequence[GaussianSteps], delta: float) -> float:
    """ε at ``delta`` of every release in ``history`` composed (RDP accountant):
    0 for no release, ``math.inf`` when any release had no noise."""
    if not 0 < delta < 1:
        raise PrivacyAccountingError(f"delta must be in (0, 1), got {delta}")
    if not all(h.private for h in history):
        return math.inf
    active = [h for h in history if h.steps > 0]
    if not active:
        return 0.0
    return _accountant_epsilon(active, delta)


def calibrate_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """The smallest noise multiplier (to Opacus's tolerance of 0.01 in ε) whose
    ``steps`` steps at ``sample_rate`` stay within ``target_epsilon`` at ``delta``."""
    from opacus.accountants.utils import get_noise_multiplier

    if steps < 1:
        raise PrivacyAccountingError(f"cannot calibrate noise for {steps} steps")
    GaussianSteps(1.0, sample_rate, steps)  # validates the rate
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # order-range hints, see RDP_ORDERS
            return float(
                get_noise_multiplier(
                    target_epsilon=target_epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant="rdp",
                    alphas=list(RDP_ORDERS),
                )
            )
    except ValueError as exc:  # "The privacy budget is too low."
        raise PrivacyAccountingError(
            f"no noise multiplier reaches ε = {target_epsilon} at δ = {delta} over {steps} "
            f"steps at sample rate {sample_rate:g}: {exc}"
        ) from None


def _accountant_epsilon(history: Sequence[GaussianSteps], delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(h.noise_multiplier, h.sample_rate, h.steps) for h in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # order-range hints, see RDP_ORDERS
        return float(accountant.get_epsilon(delta=delta, alphas=list(RDP_ORDERS)))
