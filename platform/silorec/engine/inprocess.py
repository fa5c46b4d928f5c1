"""The in-process engine: the very same ServerApp and ClientApp, no Ray, no network.

:class:`InProcessGrid` implements Flower's ``Grid`` by handing each message to the
destination node's ClientApp in this process, one message at a time (sequential, so
runs are deterministic and a 2-core machine is not oversubscribed). Like a SuperLink,
it assigns message ids and turns a ClientApp exception into an error reply, so the
server's failure handling is exercised exactly as in simulation or deployment.
"""

from __future__ import annotations

import queue
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

#: Node ids of in-process nodes: first + partition id (Flower's are random).
FIRST_NODE_ID = 1001


@dataclass
class InProcessNode:
    """A simulated node: its ClientApp and its persistent Context."""

    app: ClientApp
    context: Context


@dataclass
class InProcessGrid(Grid):
    """A Grid whose nodes are ClientApps in this process."""

    nodes: Mapping[int, InProcessNode]
    run_id: int = 1
    _run: Run = field(init=False)
    _inbox: queue.Queue[Message | None] = field(init=False, default_factory=queue.Queue)
    _replies: dict[str, tuple[Message, float]] = field(init=False, default_factory=dict)
    _ready: threading.Condition = field(init=False, default_factory=threading.Condition)
    _worker: threading.Thread | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._run = Run.create_empty(self.run_id)

    # -- Grid API --------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            if message.metadata.dst_node_id not in self.nodes:
                raise ValueError(f"no node {message.metadata.dst_node_id} in this run")
            meta = message.metadata.__dict__
            meta["_message_id"] = str(uuid4())
            meta["_run_id"] = self.run_id
            meta["_src_node_id"] = SUPERLINK_NODE_ID
            ids.append(message.metadata.message_id)
            self._ensure_worker()
            self._inbox.put(message)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        with self._ready:
            return [self._replies.pop(i)[0] for i in list(message_ids) if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        cap = None if timeout is None else time.monotonic() + timeout * max(len(pending), 1)
        received: list[Message] = []
        with self._ready:
            while pending:
                for message_id in [i for i in pending if i in self._replies]:
                    reply, seconds = self._replies.pop(message_id)
                    pending.discard(message_id)
                    if timeout is None or seconds <= timeout:
                        received.append(reply)
                remaining = None if cap is None else cap - time.monotonic()
                if not pending or (remaining is not None and remaining <= 0):
                    break
                self._ready.wait(remaining)
        return received

    # -- delivery ------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._deliver, name="silorec-nodes", daemon=True)
            self._worker.start()

    def _deliver(self) -> None:
        while (message := self._inbox.get()) is not None:
            node = self.nodes[message.metadata.dst_node_id]
            started = time.monotonic()
            try:
                reply = node.app(message, node.context)
            except Exception as exc:  # noqa: BLE001 - becomes an error reply, as in Flower
                reason = f"{type(exc)}:<'{exc}'>"
                reply = Message(
                    Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                    reply_to=message,
                )
            reply.metadata.__dict__["_message_id"] = str(uuid4())
            with self._ready:
                seconds = time.monotonic() - started
                self._replies[reply.metadata.reply_to_message_id] = (reply, seconds)
                self._ready.notify_all()

    def close(self) -> None:
        """Stop the delivery thread once pending messages are handled."""
        if self._worker is not None and self._worker.is_alive():
            self._inbox.put(None)
            self._worker.join()


class ServerAppFailed(RuntimeError):
    """The ServerApp raised; carries its Context so the caller can still find what it
    left behind (e.g. the run directory with the failure recorded)."""

    def __init__(self, context: Context, error: BaseException) -> None:
        super().__init__(str(error))
        self.context = context
        self.error = error


def run_apps(
    server_app: ServerApp,
    client_app: ClientApp,
    *,
    num_nodes: int,
    run_config: dict[str, Any],
    node_configs: list[dict[str, Any]] | None = None,
    run_id: int | None = None,
) -> Context:
    """Run one federation in this process; returns the server's Context (its
    ``state`` carries what the ServerApp left for its caller). A ServerApp exception
    comes back as :class:`ServerAppFailed`.

    Each run gets a fresh run id unless one is given, as a SuperLink's runs do: nodes
    kept prepared between runs count per-run limits (their floor) by it."""
    run_id = secrets.randbits(48) if run_id is None else run_id
    configs = node_configs or [
        {"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)
    ]
    nodes = {
        FIRST_NODE_ID + i: InProcessNode(
            client_app,
            Context(run_id, FIRST_NODE_ID + i, dict(config), RecordDict(), dict(run_config)),
        )
        for i, config in enumerate(configs)
    }
    grid = InProcessGrid(nodes, run_id=run_id)
    server_context = Context(run_id, SUPERLINK_NODE_ID, {}, RecordDict(), dict(run_config))
    # Flower stamps new messages with the identity of the process's task, which a
    # ServerApp process gets from its SuperLink; here this process is that task.
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, SUPERLINK_NODE_ID, 1
    try:
        server_app(grid, server_context)
    except Exception as exc:
        raise ServerAppFailed(server_context, exc) from exc
    finally:
        grid.close()
        TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None
    return server_context


def state_value(context: Context, record: str, key: str) -> Any:
    """A value the ServerApp left in its Context state, or None."""
    config = context.state.get(record)
    if isinstance(config, ConfigRecord):
        return config.get(key)
    return None
