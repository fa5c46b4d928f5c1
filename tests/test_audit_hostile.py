"""A hostile domain node (``tests/hostile``) attaches its interactions to its upload,
in-process with the real ServerApp: it is blocked, the run carries on without it, and
the audit fails naming the node and what it tried to send."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile.project import hostile_project

from silorec.audit.log import read_log
from silorec.cli import main
from silorec.engine.local import run_inprocess
from silorec.results import load_run

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"
HOSTILE = 1  # partition of domain 'beta'


def check_blocked_run(run_dir: Path, tried: list[str]) -> None:
    """What every hostile run must show: the server never got the leak, the merge
    went on with the honest domains, and the audit fails naming beta's attempt."""
    results = load_run(run_dir)
    assert results.status == "completed"
    (failure,) = results.failures
    assert (failure.phase, failure.domain) == ("fine-tune", "beta")
    assert "error 6: wire policy blocked the 'train' reply of domain 'beta'" in failure.reason
    assert all(m["domains"] == ["alpha", "gamma"] for m in results.merges)
    assert "individual:beta" not in results.models()
    # The server received the error, never the payload.
    server = read_log(run_dir / "audit" / "server.jsonl")
    beta = results.node("beta").node_id
    (train,) = [e for e in server if e.event == "received" and e.node_id == beta
                and e.message_type == "train"]  # fmt: skip
    assert train.error is not None and train.payload.records == ()
    assert main(["audit", str(run_dir)]) == 1
    report = json.loads((run_dir / "audit.json").read_text())
    (finding,) = [f for f in report["findings"] if f["severity"] == "fail"]
    assert (finding["node_id"], finding["domain"]) == (beta, "beta")
    assert "'train' reply (group fine-tune) was blocked" in finding["message"]
    for what in tried:
        assert what in finding["message"], what
    nodes = {n["domain"]: n for n in report["nodes"]}
    assert nodes["beta"]["blocked"] == 1 and "model weights" not in nodes["beta"]["data_sent"]


LEAKS = {
    "int-array": [
        "It tried to send info (config: domain",
        "interactions (array: items int32 [",
        "array 'interactions/items': is int32: integer, boolean and text arrays never leave a node",
        "consecutive item ids of user sequences as int32 little-endian (first at byte 0)",
    ],
    "float-ids": [
        "array 'item_embeddings/text': ",
        "consecutive item ids of user sequences as float32 little-endian (first at byte 0)",
    ],
    "config-string": [
        "info (config: domain, history)",
        "config 'info' key 'history': is not allowed (str (",
        "config 'info' key 'history': 20 raw user identifier(s)",
        "raw item identifier(s)",
    ],
}


@pytest.mark.parametrize("leak", list(LEAKS))
def test_a_hostile_node_is_blocked_and_the_audit_names_it(leak: str, tmp_path: Path) -> None:
    project = hostile_project(tmp_path / "project", leak, HOSTILE)
    run_dir = run_inprocess(TINY, project, out=tmp_path / "run")
    check_blocked_run(run_dir, LEAKS[leak])
    node_log = (run_dir / "audit" / "node-beta.jsonl").read_text()
    assert "user0000" not in node_log  # what was blocked is described, never copied


def test_a_leak_of_planted_canaries_is_reported_as_such(tmp_path: Path) -> None:
    scenario = tmp_path / "canaries.toml"
    scenario.write_text(TINY.read_text() + "\n[audit]\ncanaries = 4\n")
    project = hostile_project(tmp_path / "project", "int-array", HOSTILE)
    run_dir = run_inprocess(scenario, project, out=tmp_path / "run")
    check_blocked_run(run_dir, [*LEAKS["int-array"], "consecutive item ids of canary sequences"])
