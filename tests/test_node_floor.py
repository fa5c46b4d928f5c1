"""The node's own privacy floor (silorec.node.floor): set by the node's config, never
loosened by the scenario; a refused request is an error reply with its reason, logged
on the node and shown in the server's results, and the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from silorec.apps.run_config import NODE_BINDING, binding_text
from silorec.audit.log import read_log
from silorec.cli import main
from silorec.engine.inprocess import FIRST_NODE_ID, ServerAppFailed, run_apps
from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.node import NodeConfigError
from silorec.node.floor import (
    NODE_CONFIG_ENV,
    FloorRefused,
    NodeFloor,
    merged_node_config,
    parse_node_config,
)
from silorec.results import load_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "scenarios" / "tiny.toml"
DOMAINS = ["alpha", "beta", "gamma", "delta"]


def test_node_config_syntax_is_flowers() -> None:
    assert parse_node_config('max-epochs=5 allow-item-text=true domain="beauty" x=a/b') == {
        "max-epochs": 5, "allow-item-text": True, "domain": "beauty", "x": "a/b"}  # fmt: skip
    assert parse_node_config("") == {}
    with pytest.raises(NodeConfigError, match="expected key=value"):
        parse_node_config("max-epochs")


def test_the_nodes_own_config_wins_over_the_shared_one() -> None:
    merged = merged_node_config({"max-epochs": 2}, {NODE_CONFIG_ENV: "max-epochs=9 min-users=5"})
    assert merged == {"max-epochs": 2, "min-users": 5}


def test_a_bad_floor_value_names_its_key() -> None:
    with pytest.raises(NodeConfigError, match="max-epsilon"):
        NodeFloor.from_node_config({"max-epsilon": -1})
    with pytest.raises(NodeConfigError, match="max-evaluate-requests"):
        NodeFloor.from_node_config({"max-evaluate-requests": "many"})


def test_defaults_keep_item_texts_home_and_bound_evaluation() -> None:
    floor = NodeFloor()
    assert not floor.allow_item_text and floor.max_evaluate_requests == 3
    with pytest.raises(FloorRefused, match="allow-item-text=true"):
        floor.check_train("a", epochs=1, mechanism="none", uploads_item_texts=True)
    with pytest.raises(FloorRefused, match="max-evaluate-requests is 3"):
        floor.check_evaluate("a", served=3, n_models=2)
    with pytest.raises(FloorRefused, match="max-evaluate-models is 64"):
        floor.check_evaluate("a", served=0, n_models=65)
    with pytest.raises(FloorRefused, match="min-users is 10"):
        floor.check_users("a", "evaluation metrics", 9)


def test_max_epsilon_refuses_non_private_training_and_tightens_the_budget() -> None:
    floor = NodeFloor.from_node_config({"max-epsilon": 4})
    with pytest.raises(FloorRefused, match="without differential privacy"):
        floor.check_train("a", epochs=1, mechanism="none", uploads_item_texts=False)
    floor.check_train("a", epochs=1, mechanism="dp-sgd", uploads_item_texts=False)
    assert floor.budget(None) == 4 and floor.budget(2.0) == 2.0 and floor.budget(9.0) == 4
    assert NodeFloor().budget(None) is None


def _run_with_node_configs(tmp_path: Path, beta: dict) -> Path:
    """Tiny through the in-process engine, beta's node with its own ``beta`` config."""
    project = find_project(ROOT)
    out = tmp_path / "run"
    run_config = {**project.run_config, "scenario": str(TINY), "run-dir": str(out),
                  "engine": "inprocess",
                  NODE_BINDING: binding_text({d: FIRST_NODE_ID + i for i, d in enumerate(DOMAINS)})}  # fmt: skip
    configs = [{"partition-id": i, "num-partitions": 4} for i in range(4)]
    configs[1].update(beta)
    try:
        run_apps(project.load(project.serverapp), project.load(project.clientapp), num_nodes=4,
                 run_config=run_config, node_configs=configs)  # fmt: skip
    except ServerAppFailed:
        pass
    return out


@pytest.mark.parametrize(
    ("config", "phase", "reason"),
    [
        ({"max-epochs": 1}, "fine-tune", "2 local epochs requested, its node floor max-epochs is 1"),
        ({"max-epsilon": 8.0}, "fine-tune", "its node floor max-epsilon is 8"),
        ({"min-users": 1000}, "fine-tune", "user(s) behind it, its node floor min-users is 1000"),
    ],
    ids=["max-epochs", "max-epsilon", "min-users"],
)  # fmt: skip
def test_a_node_refuses_beyond_its_floor_and_the_run_goes_on(
    tmp_path: Path, config: dict, phase: str, reason: str
) -> None:
    run_dir = _run_with_node_configs(tmp_path, config)
    results = load_run(run_dir)
    assert results.status == "completed"
    failures = [f for f in results.failures if f.domain == "beta"]
    assert failures and failures[0].phase == phase and reason in failures[0].reason
    assert all(m["domains"] == ["alpha", "gamma"] for m in results.merges)
    # Logged on the node: the error reply, with the reason.
    node_log = read_log(run_dir / "audit" / "node-beta.jsonl")
    refused = [e for e in node_log if e.message_type == "train" and e.error is not None]
    assert refused and reason in refused[0].error.reason
    assert (
        "beta" in (run_dir / "report.md").read_text()
        and reason in (run_dir / "report.md").read_text()
    )


def test_min_users_also_bounds_evaluation(tmp_path: Path) -> None:
    run_dir = _run_with_node_configs(tmp_path, {"min-users": 1000})
    results = load_run(run_dir)
    evaluate = [f for f in results.failures if f.domain == "beta" and f.phase == "evaluate"]
    assert evaluate and "refuses to report evaluation metrics" in evaluate[0].reason
    assert {r.domain for r in results.rows} == {"alpha", "gamma", "delta"}


def test_the_scenario_cannot_switch_off_the_guard_or_the_audit_log(tmp_path: Path) -> None:
    """``[audit] enabled = false`` is ignored: every node logs, the server logs, and
    ``silorec audit`` passes."""
    scenario = tmp_path / "tiny-off.toml"
    scenario.write_text(TINY.read_text() + "\n[audit]\nenabled = false\n")
    run_dir = run_inprocess(scenario, find_project(ROOT), out=tmp_path / "run")
    for domain in DOMAINS:
        entries = read_log(run_dir / "audit" / f"node-{domain}.jsonl")
        assert entries and all(e.verdict is not None for e in entries if e.error is None)
    assert (run_dir / "audit" / "server.jsonl").exists()
    assert main(["audit", str(run_dir)]) == 0
    assert json.loads((run_dir / "audit.json").read_text())["verdict"] == "PASS"


def test_silorec_run_passes_the_node_config_to_every_node(tmp_path: Path) -> None:
    code = main(["run", str(TINY), "--out", str(tmp_path / "run"), "--project", str(ROOT),
                 "--node-config", "max-epochs=1"])  # fmt: skip
    assert code == 1  # every merged domain refuses: nothing to merge
    results = load_run(tmp_path / "run")
    assert sum("max-epochs is 1" in f.reason for f in results.failures) == 3


def test_a_bad_node_config_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(NodeConfigError, match="max-epochs"):
        run_inprocess(TINY, find_project(ROOT), out=tmp_path / "run", node_config="max-epochs=0")
    assert not (tmp_path / "run").exists()
    code = main(["run", str(TINY), "--out", str(tmp_path / "run"), "--project", str(ROOT),
                 "--node-config", "max-epochs=0"])  # fmt: skip
    assert code == 2 and not (tmp_path / "run").exists()
