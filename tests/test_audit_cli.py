"""`silorec audit RUN_DIR` on a real in-process run: the default run passes, and
every way its logs can disagree or hold something forbidden fails with a finding
that names the node."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from silorec.audit.log import AuditLog, LogEntry, read_log
from silorec.audit.payload import Payload, RecordInfo, WireArray, WireRecord, describe
from silorec.cli import main
from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.wire import protocol

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"
DOMAINS = ["alpha", "beta", "gamma", "delta"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audited") / "run"
    return run_inprocess(TINY, find_project(Path(__file__).parent), out=out)


@pytest.fixture
def run(tiny_run: Path, tmp_path: Path) -> Path:
    """A copy of the run to tamper with."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("audit.*"))
    return copy


def audit(run_dir: Path, *extra: str) -> tuple[int, dict]:
    code = main(["audit", str(run_dir), *extra])
    return code, json.loads((run_dir / "audit.json").read_text())


def rewrite(path: Path, edit: Callable[[list[LogEntry]], list[LogEntry]]) -> None:
    """Replace a log by an edited version, consistent line by line."""
    entries = edit(read_log(path))
    path.unlink()
    for entry in entries:
        AuditLog(path).append(entry)


def is_train(entry: LogEntry) -> bool:
    return entry.message_type == protocol.TRAIN


def test_a_default_run_writes_both_sides_of_the_trail_and_passes(run: Path) -> None:
    names = sorted(p.name for p in (run / "audit").glob("*.jsonl"))
    assert names == ["node-alpha.jsonl", "node-beta.jsonl", "node-delta.jsonl",
                     "node-gamma.jsonl", "server.jsonl"]  # fmt: skip
    code, report = audit(run)
    assert code == 0 and report["verdict"] == "PASS" and report["findings"] == []
    nodes = {n["domain"]: n for n in report["nodes"]}
    assert sorted(nodes) == sorted(DOMAINS)
    merged = ["domain name", "item text embeddings", "model weights", "scalar metrics"]
    assert all(nodes[d]["data_sent"] == merged for d in ("alpha", "beta", "gamma"))
    assert nodes["delta"]["data_sent"] == ["domain name", "scalar metrics"]  # unseen: no upload
    # Bytes out = the node's own log = what the server logged receiving.
    server = read_log(run / "audit" / "server.jsonl")
    for domain, node in nodes.items():
        mine = read_log(run / "audit" / f"node-{domain}.jsonl")
        assert node["bytes_sent"] == sum(e.payload.nbytes for e in mine)
        assert node["bytes_sent"] == sum(e.payload.nbytes for e in server
                                         if e.event == "received" and e.node_id == node["node_id"])  # fmt: skip
        assert node["replies"] == len(mine) == node["messages_received"]
    markdown = (run / "audit.md").read_text()
    assert markdown.startswith("# Privacy audit: PASS")
    assert "| alpha | yes | 3 |" in markdown.replace(f"| {nodes['alpha']['node_id']} ", "")
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def _drop_node_log(run: Path) -> str:
    (run / "audit" / "node-beta.jsonl").unlink()
    return "no audit log from this node: what it sent cannot be verified"


def _drop_node_line(run: Path) -> str:
    rewrite(run / "audit" / "node-gamma.jsonl", lambda es: [e for e in es if not is_train(e)])
    return "the server received a reply the node never logged: info (config: domain); weights"


def _change_a_hash(run: Path) -> str:
    def edit(entries: list[LogEntry]) -> list[LogEntry]:
        out = []
        for entry in entries:
            if entry.event == "received" and is_train(entry) and entry.error is None:
                records = list(entry.payload.records)
                weights = next(i for i, r in enumerate(records) if r.name == protocol.WEIGHTS)
                first = replace(records[weights].arrays[0], sha256="0" * 64)
                records[weights] = replace(
                    records[weights], arrays=(first, *records[weights].arrays[1:])
                )
                entry = replace(entry, payload=replace(entry.payload, records=tuple(records)))
            out.append(entry)
        return out

    rewrite(run / "audit" / "server.jsonl", edit)
    return "node and server logs differ: array 'weights/adaptor.layers.weight' (SHA-256 or shape differs)"


def _add_a_message(run: Path) -> str:
    server = run / "audit" / "server.jsonl"
    template = next(e for e in read_log(server) if e.event == "received" and is_train(e))
    leak = describe(Payload((WireRecord("leak", "array",
                                        arrays={"x": WireArray.from_numpy(np.arange(9))}),)))  # fmt: skip
    AuditLog(server).append(replace(template, reply_to_message_id="forged", payload=leak))
    return "the server received a reply the node never logged: leak (array: x int64 [9])"


def _replay_finds_an_identifier(run: Path) -> str:
    """A metric keyed by a user id, consistently in both logs: only the replayed
    identifier scan (the run's data is on this machine) can tell."""

    def edit(entries: list[LogEntry]) -> list[LogEntry]:
        out = []
        for entry in entries:
            metrics = entry.payload.record(protocol.METRICS)
            if is_train(entry) and entry.node_id == 1001 and metrics is not None:
                renamed = RecordInfo(metrics.name, metrics.kind, entries={"user000004": 1.0})
                records = tuple(renamed if r is metrics else r for r in entry.payload.records)
                entry = replace(entry, payload=replace(entry.payload, records=records))
            out.append(entry)
        return out

    rewrite(run / "audit" / "server.jsonl", edit)
    rewrite(run / "audit" / "node-alpha.jsonl", edit)
    return (
        "'train' reply (group fine-tune), replayed: metric 'metrics' key: 1 raw user identifier(s)"
    )


@pytest.mark.parametrize(
    "tamper",
    [_drop_node_log, _drop_node_line, _change_a_hash, _add_a_message, _replay_finds_an_identifier],
    ids=["missing-node-log", "missing-message", "hash-mismatch", "extra-message", "identifier"],
)
def test_the_audit_fails_with_a_finding_naming_the_node(run: Path, tamper) -> None:
    expected = tamper(run)
    code, report = audit(run)
    assert code == 1 and report["verdict"] == "FAIL"
    fails = [f for f in report["findings"] if f["severity"] == "fail"]
    assert any(expected in f["message"] for f in fails), fails
    assert all(f["node_id"] is not None and f["domain"] in DOMAINS for f in fails)
    assert (run / "audit.md").read_text().startswith("# Privacy audit: FAIL")


def test_an_edited_log_line_fails_the_audit(run: Path) -> None:
    path = run / "audit" / "node-alpha.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"bytes":', '"bytes":1', 1)
    path.write_text("\n".join(lines) + "\n")
    code, report = audit(run)
    assert code == 1
    assert any("node-alpha.jsonl:2: not a valid audit log line" in f["message"]
               for f in report["findings"])  # fmt: skip


def test_node_logs_collected_elsewhere_can_be_given(run: Path, tmp_path: Path) -> None:
    collected = tmp_path / "collected"
    collected.mkdir()
    for log in (run / "audit").glob("node-*.jsonl"):
        shutil.move(log, collected / log.name)
    assert audit(run)[0] == 1  # the run's own folder holds no node log now
    assert audit(run, "--node-logs", str(collected))[0] == 0
    files = [str(p) for p in sorted(collected.iterdir())]
    assert audit(run, "--node-logs", *files)[0] == 0
    assert audit(run, "--node-logs", *files[:3])[0] == 1  # one node's log missing


def test_bad_input_is_exit_code_2(tmp_path: Path, run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["audit", str(tmp_path / "nowhere")]) == 2
    assert main(["audit", str(run), "--node-logs", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such node log file or folder" in capsys.readouterr().err


def test_the_report_files_are_replaced_atomically(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit(run)
    old_json = (run / "audit.json").read_text()
    (run / "audit" / "node-beta.jsonl").unlink()
    real_replace, calls = os.replace, []

    def failing_second_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second_replace)
    with pytest.raises(OSError, match="disk full"):
        main(["audit", str(run)])
    assert (run / "audit.md").read_text().startswith("# Privacy audit: FAIL")  # new
    assert (run / "audit.json").read_text() == old_json  # untouched, not half-written
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


def test_a_run_with_canaries_trains_on_them_and_passes(tmp_path: Path) -> None:
    """Canaries are planted on every node and never show up in what it sends; the
    audit's replay plants the same ones."""
    scenario = tmp_path / "canaries.toml"
    scenario.write_text(TINY.read_text() + "\n[audit]\ncanaries = 5\n")
    run_dir = run_inprocess(scenario, find_project(Path(__file__).parent), out=tmp_path / "run")
    code, report = audit(run_dir)
    assert code == 0, report["findings"]
    assert any("scans replayed" in note for note in report["notes"])
    describe_reply = next(
        e
        for e in read_log(run_dir / "audit" / "node-alpha.jsonl")
        if e.message_type == protocol.DESCRIBE
    )
    assert describe_reply.payload.record(protocol.METRICS).entries["n_users"] == 60.0 + 5
