"""A domain node's privacy, without Flower: the release plan (noise calibrated over
the run's planned uploads), what a private upload carries, the ledger it updates and
the membership split it trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from silorec.models import build_model, get_weights
from silorec.node import DomainNode
from silorec.node.privacy import PUBLIC_TRAIN_SCALARS, planned_training
from silorec.privacy import (
    GaussianSteps,
    PrivacyBudgetExceeded,
    epsilon,
    gaussian_release_steps,
)
from silorec.scenario import Scenario, parse_scenario_text

TINY = (Path(__file__).parent / "scenarios" / "tiny.toml").read_text()


def scenario_with(sections: str) -> Scenario:
    """The tiny scenario with extra top-level tables."""
    return parse_scenario_text(TINY.replace("[output]", f"{sections}\n[output]"), "tiny.toml")


def node_of(scenario: Scenario) -> DomainNode:
    return DomainNode(scenario, scenario.domains[0], base_dir=Path(__file__).parent)


def theta0(node: DomainNode) -> dict[str, np.ndarray]:
    return get_weights(build_model(node.scenario.model, node.item_embeddings.shape[1], seed=0))


def test_planned_uploads_count_warm_up_fine_tuning_and_fedavg_baseline() -> None:
    plain = scenario_with("")
    assert planned_training(plain) == (1, plain.train.epochs)
    both = scenario_with(
        '[base]\ninit = "fedavg"\nfedavg_rounds = 3\nfedavg_local_epochs = 2\n\n'
        "[baselines]\nfedavg_rounds = 2\nfedavg_local_epochs = 1\n"
    )
    assert planned_training(both) == (1 + 3 + 2, both.train.epochs + 3 * 2 + 2 * 1)


def test_dp_sgd_noise_is_calibrated_over_every_planned_upload() -> None:
    scenario = scenario_with(
        '[base]\ninit = "fedavg"\nfedavg_rounds = 2\n\n'
        '[privacy]\nmechanism = "dp-sgd"\ntarget_epsilon = 3.0\n'
    )
    node = node_of(scenario)
    warm_up, fine_tune = node.privacy.plan(1), node.privacy.plan(scenario.train.epochs)
    assert warm_up.noise_multiplier == fine_tune.noise_multiplier > 0
    schedule = fine_tune.schedule
    assert schedule is not None and schedule.batch_size == scenario.train.batch_size
    run = [warm_up.gaussian, warm_up.gaussian, fine_tune.gaussian]
    total = epsilon(run, node.privacy.delta)
    assert 2.95 < total <= 3.0
    assert node.privacy.delta == pytest.approx(min(1e-5, 0.1 / node.prepared.domain.n_users))


def test_a_gaussian_upload_is_noisy_accounted_and_withholds_data_scalars(tmp_path: Path):
    scenario = scenario_with(
        '[privacy]\nmechanism = "gaussian"\ntarget_epsilon = 2.0\nclip_norm = 0.5\ndelta = 1e-3\n'
    )
    node = node_of(scenario)
    start = theta0(node)
    outcome = node.train(start, epochs=1, early_stopping=True, label="fine-tune",
                         ledger_dir=tmp_path, run="7")  # fmt: skip
    sigma = outcome.metrics["privacy_noise_multiplier"]
    assert epsilon([gaussian_release_steps(sigma)], 1e-3) == pytest.approx(2.0, abs=0.011)
    assert outcome.metrics["privacy_epsilon"] == pytest.approx(2.0, abs=0.011)
    assert outcome.metrics["privacy_delta"] == 1e-3 and outcome.metrics["privacy_releases"] == 1
    # Noise of standard deviation σ x 2 x clip_norm on every coordinate.
    moved = np.concatenate([(outcome.weights[n] - start[n]).ravel() for n in start])
    assert np.std(moved) == pytest.approx(sigma * 2 * 0.5, rel=0.05)
    leaked = set(outcome.report.scalars()) - PUBLIC_TRAIN_SCALARS
    assert leaked and not leaked & set(outcome.metrics)  # loss and validation withheld
    ledger = node.ledger(tmp_path)
    assert [(r.run, r.phase, r.mechanism) for r in ledger.releases] == [("7", "fine-tune",
                                                                           "gaussian")]  # fmt: skip


def test_without_privacy_an_upload_is_recorded_as_infinite_epsilon(tmp_path: Path) -> None:
    node = node_of(scenario_with(""))
    outcome = node.train(theta0(node), epochs=1, early_stopping=False, label="fine-tune",
                         ledger_dir=tmp_path, run="1")  # fmt: skip
    assert outcome.metrics["privacy_epsilon_unbounded"] == 1.0
    assert "privacy_epsilon" not in outcome.metrics
    assert "final_train_loss" in outcome.metrics  # nothing to withhold without DP
    assert node.ledger(tmp_path).releases[0].gaussian == GaussianSteps(0.0, 1.0, 1)


def test_the_budget_is_checked_before_any_training(tmp_path: Path) -> None:
    scenario = scenario_with(
        '[privacy]\nmechanism = "dp-sgd"\nnoise_multiplier = 0.5\nbudget_epsilon = 1.0\n'
    )
    node = node_of(scenario)
    with pytest.raises(PrivacyBudgetExceeded, match="domain 'alpha' refuses to upload"):
        node.train(theta0(node), epochs=None, early_stopping=False, label="fine-tune",
                   ledger_dir=tmp_path, run="1")  # fmt: skip
    assert node.ledger(tmp_path).releases == []


def test_membership_inference_keeps_non_members_out_of_training(tmp_path: Path) -> None:
    scenario = scenario_with(
        '[privacy]\nmechanism = "dp-sgd"\nnoise_multiplier = 1.0\n'
        "membership_inference = true\nmia_holdout_fraction = 0.25\n"
    )
    node = node_of(scenario)
    members, non_members = node.privacy.membership
    assert not set(members) & set(non_members)
    outcome = node.train(theta0(node), epochs=1, early_stopping=False, label="fine-tune",
                         ledger_dir=tmp_path, run="1")  # fmt: skip
    assert outcome.report.n_train_sequences == len(members)
    assert outcome.metrics["mia_members"] == len(members)
    assert outcome.metrics["mia_non_members"] == len(non_members)
    assert 0.0 <= outcome.metrics["mia_auc"] <= 1.0
