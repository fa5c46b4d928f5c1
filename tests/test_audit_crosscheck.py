"""Node logs against the server log: each kind of disagreement is a finding that
names the node and the message."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from silorec.audit.crosscheck import cross_check
from silorec.audit.log import ErrorInfo, LogEntry
from silorec.audit.payload import Payload, WireArray, WireRecord, describe
from silorec.audit.verdict import Verdict

WEIGHTS = describe(Payload((
    WireRecord("info", "config", entries={"domain": "alpha"}),
    WireRecord("weights", "array", arrays={"w": WireArray.from_numpy(np.ones(4, np.float32))}),
)))  # fmt: skip
DOMAINS = {1001: "alpha", 1002: "beta"}


def sent(message_id: str, node_id: int = 1001) -> LogEntry:
    return LogEntry("sent", "train", 1, node_id, group_id="fine-tune", message_id=message_id)


def received(reply_to: str, node_id: int = 1001, **changes) -> LogEntry:
    entry = LogEntry("received", "train", 1, node_id, group_id="fine-tune", message_id=f"r-{reply_to}",
                     reply_to_message_id=reply_to, payload=WEIGHTS)  # fmt: skip
    return replace(entry, **changes)


def reply(reply_to: str, node_id: int = 1001, **changes) -> LogEntry:
    entry = LogEntry("reply", "train", 1, node_id, group_id="fine-tune", reply_to_message_id=reply_to,
                     domain=DOMAINS[node_id], payload=WEIGHTS, verdict=Verdict())  # fmt: skip
    return replace(entry, **changes)


def findings(server: list[LogEntry], nodes: list[LogEntry], logged=frozenset({1001, 1002})):
    return [
        (f.severity, f.node_id, f.message) for f in cross_check(server, nodes, DOMAINS, set(logged))
    ]


def test_matching_logs_have_no_findings() -> None:
    assert findings([sent("m1"), received("m1")], [reply("m1")]) == []


def test_a_reply_whose_content_differs_between_the_logs_fails_naming_the_array() -> None:
    other = describe(Payload((
        WireRecord("info", "config", entries={"domain": "alpha"}),
        WireRecord("weights", "array", arrays={"w": WireArray.from_numpy(np.zeros(4, np.float32))}),
    )))  # fmt: skip
    assert findings([sent("m1"), received("m1", payload=other)], [reply("m1")]) == [
        ("fail", 1001, "'train' reply (group fine-tune): node and server logs differ: "
                       "array 'weights/w' (SHA-256 or shape differs)"),
    ]  # fmt: skip


def test_a_reply_the_node_never_logged_fails() -> None:
    assert findings([sent("m1"), received("m1")], []) == [
        ("fail", 1001, "'train' reply (group fine-tune): the server received a reply the node "
                       "never logged: info (config: domain); weights (array: w float32 [4])"),
        ("warning", 1001, "'train' message (group fine-tune): the node logged no reply"),
    ]  # fmt: skip


def test_an_error_flower_made_for_an_unreachable_node_is_only_a_warning() -> None:
    lost = received("m1", payload=describe(Payload(())), error=ErrorInfo(5, "node unavailable"))
    assert [(s, m.split(": ", 1)[1]) for s, _, m in findings([sent("m1"), lost], [])][:1] == [
        ("warning", "error reply the node did not log, made by Flower: node unavailable")
    ]


def test_replies_lost_on_the_way_and_unanswered_messages_are_warnings() -> None:
    assert findings([sent("m1"), sent("m2")], [reply("m1"), reply("m9")]) == [
        ("warning", 1001, "'train' reply (group fine-tune): the server never received it (late or lost)"),
        ("warning", 1001, "'train' reply (group fine-tune): answers a message the server log does not hold"),
        ("warning", 1001, "'train' reply (group fine-tune): the server never received it (late or lost)"),
        ("warning", 1001, "'train' message (group fine-tune): the node logged no reply"),
    ]  # fmt: skip


def test_a_reply_logged_twice_or_by_another_node_fails() -> None:
    twice = findings([sent("m1"), received("m1")], [reply("m1"), reply("m1")])
    assert twice == [("fail", 1001, "'train' reply (group fine-tune): logged more than once")]
    wrong = findings(
        [sent("m1", node_id=1001), received("m1", node_id=1002)], [reply("m1", node_id=1002)]
    )
    assert (
        "fail",
        1002,
        "'train' reply (group fine-tune): the server sent that message to node 1001",
    ) in wrong


def test_nodes_without_a_log_are_not_cross_checked_message_by_message() -> None:
    assert findings([sent("m1"), received("m1")], [], logged=frozenset()) == []
