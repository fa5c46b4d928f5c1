"""Differential privacy through the real ServerApp and ClientApp, in-process: the tiny
scenario with DP-SGD, a FedAvg warm-up round (two uploads per domain to compose), a
hard budget and membership inference. One domain's ledger already holds an earlier
release that spent its budget: it refuses, the run goes on without it, and ε, δ and
the attack's AUC of the others reach results.json and report.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from silorec.engine.inprocess import run_apps
from silorec.engine.project import find_project
from silorec.privacy import GaussianSteps, PrivacyLedger, Release, ledger_path
from silorec.results import load_run

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"
DOMAINS = ["alpha", "beta", "gamma", "delta"]
PRIVACY = """
[base]
init = "fedavg"
fedavg_rounds = 1
fedavg_local_epochs = 1

[privacy]
mechanism = "dp-sgd"
target_epsilon = 4.0
budget_epsilon = 4.0
membership_inference = true
mia_holdout_fraction = 0.2
"""


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(run directory, folder of the nodes' audit folders)."""
    root = tmp_path_factory.mktemp("dp")
    scenario = root / "tiny_dp.toml"
    scenario.write_text(TINY.read_text().replace("[output]", f"{PRIVACY}\n[output]"))
    nodes = root / "nodes"
    spent = PrivacyLedger(ledger_path(nodes / "gamma", "gamma"), "gamma", 1 / 60)
    spent.record(Release("earlier-run", "fine-tune", "dp-sgd", GaussianSteps(0.6, 1.0, 2),
                         "2026-01-01T00:00:00+00:00"))  # fmt: skip
    project = find_project(Path(__file__).parent)
    run_dir = root / "run"
    run_config = {**project.run_config, "scenario": str(scenario), "run-dir": str(run_dir),
                  "engine": "inprocess"}  # fmt: skip
    node_configs = [{"partition-id": i, "num-partitions": 4, "audit-dir": str(nodes / name)}
                    for i, name in enumerate(DOMAINS)]  # fmt: skip
    run_apps(project.load(project.serverapp), project.load(project.clientapp), num_nodes=4,
             run_config=run_config, node_configs=node_configs)  # fmt: skip
    return run_dir, nodes


def test_private_domains_report_epsilon_at_the_target(dp_run: tuple[Path, Path]) -> None:
    results = load_run(dp_run[0])
    for name in ("alpha", "beta"):
        info = results.node(name).info
        assert results.node(name).status == "ok"
        assert 3.9 < info["privacy_epsilon"] <= 4.0
        assert info["privacy_releases"] == 2 and info["privacy_noise_multiplier"] > 0
        assert info["privacy_delta"] == pytest.approx(min(1e-5, 0.1 / info["n_users"]))
        assert 0.0 <= info["mia_auc"] <= 1.0 and info["mia_non_members"] >= 1
        assert "final_train_loss" not in info and "best_valid_ndcg@10" not in info
    assert results.node("delta").info["privacy_epsilon"] == 0.0  # unseen: never uploads


def test_each_upload_is_in_the_domain_ledger(dp_run: tuple[Path, Path]) -> None:
    _, nodes = dp_run
    data = json.loads((nodes / "alpha" / "privacy-ledger-alpha.json").read_text())
    assert [r["phase"] for r in data["releases"]] == ["warm-up-1", "fine-tune"]
    assert {r["mechanism"] for r in data["releases"]} == {"dp-sgd"}
    assert data["epsilon"] == pytest.approx(
        load_run(dp_run[0]).node("alpha").info["privacy_epsilon"]
    )
    assert not (nodes / "delta" / "privacy-ledger-delta.json").exists()


def test_a_domain_over_budget_refuses_and_the_run_goes_on(dp_run: tuple[Path, Path]) -> None:
    run_dir, nodes = dp_run
    results = load_run(run_dir)
    assert results.status == "completed"
    assert results.node("gamma").status == "failed"
    # Refused in every phase it is asked to train in (a refusal costs that phase only).
    failures = [f for f in results.failures if f.domain == "gamma"]
    assert failures[0].phase == "warm-up-1"
    for failure in failures:
        assert "domain 'gamma' refuses to upload" in failure.reason
        assert "over its budget of ε = 4" in failure.reason
    ledger = json.loads((nodes / "gamma" / "privacy-ledger-gamma.json").read_text())
    assert [r["run"] for r in ledger["releases"]] == ["earlier-run"]  # nothing added


def test_report_has_the_privacy_section(dp_run: tuple[Path, Path]) -> None:
    report = (dp_run[0] / "report.md").read_text()
    section = report[report.index("## Privacy") :]
    assert "DP-SGD (per-example clipping to norm 1" in section
    assert "ε ≤ 4 per domain" in section
    eps = load_run(dp_run[0]).node("alpha").info["privacy_epsilon"]
    assert f"| alpha | merged | {eps:.3f} |" in section
    assert "| delta | unseen | 0.000 |" in section
    assert "| gamma | merged | — |" in section
