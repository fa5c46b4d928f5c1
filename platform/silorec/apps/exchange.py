"""Message rounds between the merge server and domain nodes, with accounting.

Every exchange goes through :class:`Exchange`, which counts payload bytes per node in
both directions, maps each reply (or SuperLink-made error reply) back to the message
it answers, and turns error replies and missing replies into failure reasons. The
server's workflow then never handles Flower messages directly.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from silorec.apps.records import payload_bytes

#: Extra lifetime of a message beyond the round's timeout, so a slow reply that
#: arrives just in time is still valid.
TTL_MARGIN_S = 60.0


@dataclass(frozen=True)
class NodeFailure:
    """Why a node gave no usable reply in a round."""

    node_id: int
    reason: str


class Exchange:
    """Sends rounds of messages through a Flower ``Grid`` and accounts for them."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
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
        replies = self.grid.send_and_receive(list(messages.values()), timeout=timeout)
        # Message ids are assigned when the messages are pushed.
        by_message_id = {m.metadata.message_id: node for node, m in messages.items()}
        outcome: dict[int, RecordDict | NodeFailure] = {}
        for reply in replies:
            node_id = by_message_id.get(reply.metadata.reply_to_message_id)
            if node_id is None:
                continue  # a late reply to an earlier round
            if reply.has_error():
                error = reply.error
                outcome[node_id] = NodeFailure(node_id, f"error {error.code}: {error.reason}")
            else:
                self.bytes_received[node_id] += payload_bytes(reply.content)
                outcome[node_id] = reply.content
        for node_id in messages:
            outcome.setdefault(node_id, NodeFailure(node_id, f"no reply within {timeout:g} s"))
        return outcome
