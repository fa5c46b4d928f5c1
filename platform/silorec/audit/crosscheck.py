"""Node logs against the server log: every reply logged on both sides, equal.

Replies are matched on the id of the instruction they answer (a reply's own id is
assigned by the SuperLink after the node logged it). What does not match:

- a reply the server received that its node never logged (*fail*: something left
  the node past its audit trail), unless it is an error reply without content, which
  Flower itself makes when a node is unreachable (*warning*);
- a reply logged on both sides with different content (*fail*: names the records and
  arrays that differ);
- a reply logged twice by a node, or by another node than the server addressed
  (*fail*);
- a message the server sent that its node never answered, or a reply the node sent
  that never reached the server, e.g. after a timeout (*warning*: the node's log
  still shows, and its guard checked, everything it sent).

Nodes without any log are reported once by the caller, not per message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from silorec.audit.findings import Finding, Severity
from silorec.audit.log import LogEntry
from silorec.audit.payload import PayloadInfo


def cross_check(
    server: Iterable[LogEntry],
    nodes: Iterable[LogEntry],
    domains: Mapping[int, str | None],
    logged_nodes: set[int],
) -> list[Finding]:
    """Findings from comparing the server's entries with the nodes' (one run's).
    ``logged_nodes``: node ids that have a log (others are not cross-checked)."""
    server = list(server)
    sent = {e.message_id: e for e in server if e.event == "sent"}
    received = {e.reply_to_message_id: e for e in server if e.event == "received"}
    replies: dict[str, LogEntry] = {}
    findings: list[Finding] = []

    def finding(severity: Severity, node_id: int, message: str) -> None:
        findings.append(Finding(severity, "cross-check", message, node_id, domains.get(node_id)))

    for entry in nodes:
        label = entry.label
        if entry.reply_to_message_id in replies:
            finding("fail", entry.node_id, f"{label}: logged more than once")
            continue
        replies[entry.reply_to_message_id] = entry
        instruction = sent.get(entry.reply_to_message_id)
        if instruction is None:
            finding(
                "warning", entry.node_id, f"{label}: answers a message the server log does not hold"
            )
        elif instruction.node_id != entry.node_id:
            finding(
                "fail",
                entry.node_id,
                f"{label}: the server sent that message to node {instruction.node_id}",
            )
        if entry.reply_to_message_id not in received:
            finding(
                "warning", entry.node_id, f"{label}: the server never received it (late or lost)"
            )

    for reply_to, entry in received.items():
        if entry.node_id not in logged_nodes:
            continue
        node_entry = replies.get(reply_to)
        if node_entry is None:
            if entry.error is not None and not entry.payload.records:
                finding(
                    "warning",
                    entry.node_id,
                    f"{entry.label}: error reply the node did "
                    f"not log, made by Flower: {entry.error.reason}",
                )
            else:
                finding(
                    "fail",
                    entry.node_id,
                    f"{entry.label}: the server received a reply "
                    f"the node never logged: {entry.payload.summary()}",
                )
            continue
        difference = _difference(node_entry, entry)
        if difference:
            finding(
                "fail", entry.node_id, f"{entry.label}: node and server logs differ: {difference}"
            )

    for message_id, entry in sent.items():
        if entry.node_id in logged_nodes and message_id not in replies:
            finding("warning", entry.node_id, f"{entry.label}: the node logged no reply")
    return findings


def _difference(node: LogEntry, server: LogEntry) -> str:
    """What differs between the node's and the server's record of one reply."""
    if (node.error is None) != (server.error is None):
        return "an error reply on one side only"
    if node.error is not None and server.error is not None and node.error != server.error:
        return "different error reasons"
    if node.payload.digest == server.payload.digest:
        return ""
    return _payload_difference(node.payload, server.payload)


def _payload_difference(node: PayloadInfo, server: PayloadInfo) -> str:
    node_records = {r.name: r for r in node.records}
    server_records = {r.name: r for r in server.records}
    problems = [
        f"record '{n}' only in the server's log"
        for n in server_records.keys() - node_records.keys()
    ]
    problems += [
        f"record '{n}' only in the node's log" for n in node_records.keys() - server_records.keys()
    ]
    for name in node_records.keys() & server_records.keys():
        mine, theirs = node_records[name], server_records[name]
        node_arrays = {a.name: a for a in mine.arrays}
        for array in theirs.arrays:
            if node_arrays.get(array.name) != array:
                problems.append(f"array '{name}/{array.name}' (SHA-256 or shape differs)")
        if len(mine.arrays) != len(theirs.arrays) or mine.entries != theirs.entries:
            problems.append(f"record '{name}' entries or array count differ")
    return "; ".join(sorted(problems)) or "record order differs"
