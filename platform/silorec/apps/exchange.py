"""Message rounds between the merge server and domain nodes, with accounting.

Every exchange goes through :class:`Exchange`, which counts payload bytes per node in
both directions, maps each reply (or SuperLink-made error reply) back to the message
it answers, and turns error replies and missing replies into failure reasons. The
server's workflow then never handles Flower messages directly.

With an :class:`~silorec.audit.log.AuditLog` it also writes the server's side of the
audit trail: one line per message sent and per reply received (late ones included),
described exactly as the nodes describe their replies, for ``silorec audit``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from flwr.app import Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from silorec.apps.payload import log_entry
from silorec.apps.records import payload_bytes
from silorec.audit.log import AuditLog, now_utc

#: Error replies the SuperLink makes for a node that did not answer itself (gone,
#: unreachable, its message expired): the node counts as gone, like a missing reply.
NO_ANSWER_CODES = frozenset(
    {ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE, ErrorCode.NODE_UNAVAILABLE}
)

#: Extra lifetime of a message beyond the round's timeout, so a slow reply that
#: arrives just in time is still valid.
TTL_MARGIN_S = 60.0


@dataclass(frozen=True)
class NodeFailure:
    """Why a node gave no usable reply in a round. ``silent``: it did not answer at
    all (gone or hung), as opposed to answering with an error."""

    node_id: int
    reason: str
    silent: bool = False


class Exchange:
    """Sends rounds of messages through a Flower ``Grid`` and accounts for them."""

    def __init__(self, grid: Grid, audit: AuditLog | None = None) -> None:
        self.grid = grid
        self.audit = audit
        self.bytes_sent: Counter[int] = Counter()
        self.bytes_received: Counter[int] = Counter()

    def wait_for_nodes(self, expected: int, timeout: float, poll_s: float = 0.5) -> list[int]:
        """Node ids once ``expected`` nodes are connected, or those present at the
        deadline (Flower's own helper would wait forever)."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = sorted(self.grid.get_node_ids())
            if len(nodes) >= expected or time.monotonic() >= deadline:
                return nodes
            time.sleep(poll_s)

    def round(
        self,
        requests: Mapping[int, RecordDict],
        message_type: str,
        *,
        timeout: float,
        group: str,
    ) -> dict[int, RecordDict | NodeFailure]:
        """Send ``requests[node]`` to each node and wait up to ``timeout`` seconds.

        Returns, per node, the reply's content or a :class:`NodeFailure` (error reply,
        or no reply in time).
        """
        if not requests:
            return {}
        messages: dict[int, Message] = {}
        for node_id, content in requests.items():
            messages[node_id] = Message(
                content, node_id, message_type, ttl=timeout + TTL_MARGIN_S, group_id=group
            )
            self.bytes_sent[node_id] += payload_bytes(content)
        sent_at = now_utc()
        replies = self.grid.send_and_receive(list(messages.values()), timeout=timeout)
        # Message ids are assigned when the messages are pushed.
        by_message_id = {m.metadata.message_id: node for node, m in messages.items()}
        self._log_sent(messages, sent_at)
        outcome: dict[int, RecordDict | NodeFailure] = {}
        for reply in replies:
            node_id = by_message_id.get(reply.metadata.reply_to_message_id)
            self._log_received(reply, node_id)
            if node_id is None:
                continue  # a late reply to an earlier round
            if reply.has_error():
                error = reply.error
                outcome[node_id] = NodeFailure(
                    node_id,
                    f"error {error.code}: {error.reason}",
                    silent=int(error.code) in NO_ANSWER_CODES,
                )
            else:
                self.bytes_received[node_id] += payload_bytes(reply.content)
                outcome[node_id] = reply.content
        for node_id in messages:
            outcome.setdefault(
                node_id, NodeFailure(node_id, f"no reply within {timeout:g} s", silent=True)
            )
        return outcome

    def _log_sent(self, messages: Mapping[int, Message], sent_at: str) -> None:
        if self.audit is None:
            return
        for node_id, message in messages.items():
            entry = log_entry(message, "sent", node_id=node_id)
            self.audit.append(replace(entry, time=sent_at))

    def _log_received(self, reply: Message, node_id: int | None) -> None:
        """Log a reply under the node it came from (a late reply has no round to
        map it to: its sender's id is used)."""
        if self.audit is not None:
            sender = reply.metadata.src_node_id if node_id is None else node_id
            self.audit.append(log_entry(reply, "received", node_id=sender))
