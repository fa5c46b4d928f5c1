"""The audit log: JSON lines, appended, fsynced per line, never payload data, and a
reader that names the bad line."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from silorec.audit.log import AuditLog, AuditLogError, ErrorInfo, LogEntry, read_log
from silorec.audit.payload import Payload, WireArray, WireRecord, describe
from silorec.audit.verdict import Verdict, Violation

SECRET = np.array([3.25, 17.5, 22.125], dtype=np.float32)


def reply(n: int = 0) -> LogEntry:
    payload = Payload((
        WireRecord("info", "config", entries={"domain": "alpha"}),
        WireRecord("weights", "array", arrays={"w": WireArray.from_numpy(SECRET)}),
    ))  # fmt: skip
    return LogEntry(event="reply", message_type="train", run_id=3, node_id=1001 + n,
                    group_id="fine-tune", reply_to_message_id=f"m-{n}", domain="alpha",
                    payload=describe(payload), verdict=Verdict(scan_seconds=0.01))  # fmt: skip


def test_a_line_holds_the_description_and_verdict_but_no_array_values(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "node-alpha.jsonl"
    AuditLog(path).append(reply())
    (line,) = path.read_text().splitlines()
    data = json.loads(line)
    assert data["event"] == "reply" and data["reply_to_message_id"] == "m-0"
    assert data["records"][1]["arrays"][0] == {
        "name": "w", "shape": [3], "dtype": "float32", "nbytes": 12,
        "sha256": hashlib.sha256(SECRET.tobytes()).hexdigest(),
    }  # fmt: skip
    assert data["bytes"] == 12 + len("domain") + len("alpha")
    assert data["verdict"] == {"allowed": True, "violations": [], "redactions": 0,
                               "scan_seconds": 0.01}  # fmt: skip
    assert SECRET.tobytes() not in path.read_bytes()
    assert not any(str(v) in line for v in SECRET.tolist())


def test_entries_are_appended_never_rewritten_and_read_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    first = reply(0)
    AuditLog(path).append(first)
    before = path.read_bytes()
    blocked = LogEntry(event="reply", message_type="train", run_id=3, node_id=1002,
                       error=ErrorInfo(6, "wire policy blocked ..."),
                       verdict=Verdict((Violation("type", "array 'x/y'", "is int32"),)))  # fmt: skip
    AuditLog(path).append(blocked)
    assert path.read_bytes().startswith(before)
    assert read_log(path) == [first, blocked]


def test_every_line_is_fsynced_before_append_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log = AuditLog(tmp_path / "log.jsonl")
    log.append(reply(0))
    log.append(reply(1))
    assert len(synced) == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(bytes=1), "'bytes' is 1"),
        (lambda d: d["records"][0]["entries"].update(domain="gamma"), "'payload_sha256' does not match"),
        (lambda d: d.update(v=99), "version 99"),
        (lambda d: d.update(event="gossip"), "unknown event 'gossip'"),
        (lambda d: d.pop("node_id"), "node_id"),
    ],
    ids=["bytes", "edited-record", "version", "event", "missing-field"],
)  # fmt: skip
def test_a_bad_or_edited_line_is_an_error_naming_file_and_line(
    tmp_path: Path, edit, message: str
) -> None:
    path = tmp_path / "log.jsonl"
    AuditLog(path).append(reply(0))
    data = reply(1).to_json()
    edit(data)
    with open(path, "a") as handle:
        handle.write(json.dumps(data) + "\n")
    with pytest.raises(AuditLogError, match=rf"log\.jsonl:2: .*{message}"):
        read_log(path)


def test_a_line_that_is_not_json_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(AuditLogError, match=r"log\.jsonl:1: not a valid audit log line"):
        read_log(path)
