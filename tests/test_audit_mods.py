"""The node's mods: every reply logged before it leaves, a reply that breaks the
policy replaced by an error naming the violation, identifiers redacted from error
reasons, and no reply without its log line."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from silorec.apps import client as node
from silorec.apps.mods import WireGuard, node_log_dir
from silorec.audit.log import read_log
from silorec.wire import protocol

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"
APP_DIR = Path(__file__).resolve().parents[1]
Handler = Callable[[Message, Context], Message]


@pytest.fixture(autouse=True)
def server_task() -> Iterator[None]:
    """Messages are stamped with the task identity a SuperLink gives a process."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 9, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    """The tiny scenario under a text of its own, so this test's node is prepared
    afresh (nodes are cached per process by scenario text)."""
    path = tmp_path / "scenario.toml"
    path.write_text(TINY.read_text() + f"\n# {uuid4()}\n")
    return path


def context(scenario: Path, run_dir: Path, **node_config: object) -> Context:
    run_config = {"scenario": str(scenario), "run-dir": str(run_dir)}
    config = {"partition-id": 0, "num-partitions": 4, **node_config}
    return Context(9, 1001, config, RecordDict(), run_config)


def instruction(message_type: str = protocol.DESCRIBE) -> Message:
    message = Message(RecordDict({protocol.CONFIG: ConfigRecord({})}), dst_node_id=1001,
                      message_type=message_type, group_id="describe")  # fmt: skip
    message.metadata.__dict__["_message_id"] = str(uuid4())
    return message


def app(handler: Handler, *, policy: bool = True) -> ClientApp:
    wire = WireGuard(APP_DIR)
    client = ClientApp(mods=[wire.audit_mod, wire.policy_mod] if policy else [wire.audit_mod])
    client.query("describe")(handler)
    return client


def describe(message: Message, ctx: Context) -> Message:
    return node.describe(message, ctx, APP_DIR)


def leaking(message: Message, ctx: Context) -> Message:
    reply = describe(message, ctx)
    items = node.node_for(ctx, APP_DIR).prepared.domain.flat_items
    reply.content["leak"] = ArrayRecord({"items": Array(items)})
    return reply


def test_an_honest_reply_leaves_and_is_logged_with_its_verdict(
    scenario: Path, tmp_path: Path
) -> None:
    message = instruction()
    reply = app(describe)(message, context(scenario, tmp_path / "run"))
    assert not reply.has_error()
    (entry,) = read_log(tmp_path / "run" / "audit" / "node-alpha.jsonl")
    assert (entry.event, entry.domain, entry.node_id) == ("reply", "alpha", 1001)
    assert entry.reply_to_message_id == message.metadata.message_id
    assert entry.verdict is not None and entry.verdict.allowed
    assert [r.name for r in entry.payload.records] == ["info", "metrics"]


def test_a_reply_carrying_interactions_is_replaced_by_an_error_naming_it(
    scenario: Path, tmp_path: Path
) -> None:
    reply = app(leaking)(instruction(), context(scenario, tmp_path / "run"))
    assert reply.has_error() and reply.error.code == ErrorCode.MOD_FAILED_PRECONDITION
    assert reply.error.reason.startswith("wire policy blocked the 'query.describe' reply of "
                                         "domain 'alpha': record 'leak'")  # fmt: skip
    assert "array 'leak/items': is int32" in reply.error.reason
    assert "consecutive item ids of user sequences as int32 little-endian" in reply.error.reason
    (entry,) = read_log(tmp_path / "run" / "audit" / "node-alpha.jsonl")
    assert entry.error is not None and entry.error.code == ErrorCode.MOD_FAILED_PRECONDITION
    assert entry.payload.records == ()  # nothing left
    assert entry.verdict is not None and not entry.verdict.allowed
    assert entry.verdict.blocked is not None and entry.verdict.blocked.record("leak") is not None


def test_identifiers_in_an_exception_are_redacted_once_the_data_is_known(
    scenario: Path, tmp_path: Path
) -> None:
    def crash(message: Message, ctx: Context) -> Message:
        raise KeyError("user000007 has no item item000003")

    ctx = context(scenario, tmp_path / "run")
    before = app(crash)(instruction(), ctx)  # nothing read yet: nothing to redact with
    assert before.error.reason == "<class 'KeyError'>:<''user000007 has no item item000003''>"
    app(describe)(instruction(), ctx)  # the node prepares its data
    after = app(crash)(instruction(), ctx)
    assert after.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert after.error.reason == "<class 'KeyError'>:<''<redacted> has no item <redacted>''>"
    entries = read_log(tmp_path / "run" / "audit" / "node-alpha.jsonl")
    assert [e.verdict.redactions for e in entries] == [0, 0, 2]
    last_line = (tmp_path / "run" / "audit" / "node-alpha.jsonl").read_text().splitlines()[-1]
    assert "user000007" not in last_line


def test_no_reply_leaves_without_its_log_line(scenario: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    reply = app(describe)(instruction(), context(scenario, tmp_path / "run",
                                                 **{"audit-dir": str(blocker / "audit")}))  # fmt: skip
    assert reply.has_error() and reply.error.code == ErrorCode.MOD_FAILED_PRECONDITION
    assert f"reply withheld: the audit log {blocker / 'audit'}" in reply.error.reason


def test_a_reply_past_no_policy_is_logged_without_a_verdict(scenario: Path, tmp_path: Path) -> None:
    app(describe, policy=False)(instruction(), context(scenario, tmp_path / "run"))
    (entry,) = read_log(tmp_path / "run" / "audit" / "node-alpha.jsonl")
    assert entry.verdict is None


def test_a_scenario_cannot_switch_the_guard_or_the_log_off(
    scenario: Path, tmp_path: Path
) -> None:
    """The scenario is the server's: ``[audit] enabled = false`` is ignored, the leak
    is blocked and the reply logged all the same."""
    scenario.write_text(scenario.read_text() + "\n[audit]\nenabled = false\n")
    reply = app(leaking)(instruction(), context(scenario, tmp_path / "run"))
    assert reply.has_error() and reply.error.code == ErrorCode.MOD_FAILED_PRECONDITION
    assert "wire policy blocked" in reply.error.reason
    (entry,) = read_log(tmp_path / "run" / "audit" / "node-alpha.jsonl")
    assert entry.verdict is not None and not entry.verdict.allowed


def test_where_a_node_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def where(node_config: dict, run_dir: str) -> Path:
        return node_log_dir(Context(1, 5, node_config, RecordDict(), {"run-dir": run_dir}))

    assert where({"audit-dir": "/srv/audit"}, "/runs/x") == Path("/srv/audit")
    assert where({}, "/runs/x") == Path("/runs/x/audit")
    monkeypatch.chdir(tmp_path)
    assert where({}, "") == tmp_path / "silorec-audit"
    assert os.path.isabs(where({}, ""))


def test_every_line_describes_arrays_by_hash_not_value(scenario: Path, tmp_path: Path) -> None:
    values = np.linspace(0.5, 1.5, 8, dtype=np.float32)

    def with_array(message: Message, ctx: Context) -> Message:
        reply = describe(message, ctx)
        reply.content["leak"] = ArrayRecord({"x": Array(values)})
        return reply

    app(with_array, policy=False)(instruction(), context(scenario, tmp_path / "run"))
    raw = (tmp_path / "run" / "audit" / "node-alpha.jsonl").read_bytes()
    assert values.tobytes() not in raw and b"0.5714" not in raw
