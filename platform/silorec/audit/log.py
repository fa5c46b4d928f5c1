"""Append-only JSON-lines audit logs: one line per message that crossed the wire.

A domain node logs every reply it sends (``node-<domain>.jsonl``, event ``reply``);
the merge server logs every message it sends and every reply it receives
(``server.jsonl``, events ``sent`` and ``received``). A line describes the payload
(:class:`PayloadInfo`) and never holds its data.

Each line is written with one ``write`` on a file opened for appending, then flushed
and fsynced before the message goes on: a reply is never on the wire without its line
on disk, and nothing earlier in the file is ever rewritten. Each line also carries the
payload's byte count and digest, which :func:`read_log` recomputes, so a hand-edited
description does not pass unnoticed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from silorec.audit.payload import PayloadInfo
from silorec.audit.verdict import Verdict

LOG_VERSION = 1
AUDIT_DIR = "audit"
SERVER_AUDIT_LOG = "server.jsonl"
NODE_LOG_PREFIX = "node-"
LOG_SUFFIX = ".jsonl"

Event = Literal["reply", "sent", "received"]
EVENTS: tuple[Event, ...] = ("reply", "sent", "received")


class AuditLogError(ValueError):
    """An audit log that cannot be read or written (the message names file and line)."""


def node_log_name(domain: str) -> str:
    """File name of a node's log: ``node-<domain>.jsonl``."""
    return f"{NODE_LOG_PREFIX}{domain}{LOG_SUFFIX}"


def now_utc() -> str:
    """The current time, ISO 8601 in UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ErrorInfo:
    """An error reply: Flower's error code and the reason text."""

    code: int
    reason: str


@dataclass(frozen=True)
class LogEntry:
    """One message as logged.

    ``node_id`` is always the domain node's id: the sender of a reply, or the
    destination of a message the server sent. ``message_id`` is the id of the message
    the server sent or received; ``reply_to_message_id`` is, for a reply, the id of
    the instruction it answers (a node cannot know its reply's own id: the SuperLink
    assigns it later, so both sides match replies on this one).
    """

    event: Event
    message_type: str
    run_id: int
    node_id: int
    group_id: str = ""
    message_id: str = ""
    reply_to_message_id: str = ""
    domain: str | None = None
    error: ErrorInfo | None = None
    payload: PayloadInfo = field(default_factory=PayloadInfo)
    verdict: Verdict | None = None
    time: str = field(default_factory=now_utc)

    @property
    def label(self) -> str:
        """``'train' reply (group fine-tune)``: this message, named in a finding."""
        noun = "message" if self.event == "sent" else "reply"
        group = f" (group {self.group_id})" if self.group_id else ""
        return f"'{self.message_type}' {noun}{group}"

    def to_json(self) -> dict[str, Any]:
        return {
            "v": LOG_VERSION,
            "time": self.time,
            "event": self.event,
            "message_type": self.message_type,
            "run_id": self.run_id,
            "node_id": self.node_id,
            "domain": self.domain,
            "group_id": self.group_id,
            "message_id": self.message_id,
            "reply_to_message_id": self.reply_to_message_id,
            "error": None
            if self.error is None
            else {"code": self.error.code, "reason": self.error.reason},
            "bytes": self.payload.nbytes,
            "payload_sha256": self.payload.digest,
            "records": self.payload.to_json(),
            "verdict": None if self.verdict is None else self.verdict.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogEntry:
        if data.get("v") != LOG_VERSION:
            raise ValueError(f"log format version {data.get('v')!r}, expected {LOG_VERSION}")
        event = str(data["event"])
        if event not in EVENTS:
            raise ValueError(f"unknown event '{event}'")
        error = data.get("error")
        verdict = data.get("verdict")
        entry = cls(
            event=event,  # type: ignore[arg-type]
            message_type=str(data["message_type"]),
            run_id=int(data["run_id"]),
            node_id=int(data["node_id"]),
            group_id=str(data.get("group_id", "")),
            message_id=str(data.get("message_id", "")),
            reply_to_message_id=str(data.get("reply_to_message_id", "")),
            domain=None if data.get("domain") is None else str(data["domain"]),
            error=None if error is None else ErrorInfo(int(error["code"]), str(error["reason"])),
            payload=PayloadInfo.from_json(data.get("records", [])),
            verdict=None if verdict is None else Verdict.from_json(verdict),
            time=str(data["time"]),
        )
        if data.get("bytes") != entry.payload.nbytes:
            raise ValueError(
                f"'bytes' is {data.get('bytes')}, the records add up to {entry.payload.nbytes}"
            )
        if data.get("payload_sha256") != entry.payload.digest:
            raise ValueError("'payload_sha256' does not match the records it describes")
        return entry


class AuditLog:
    """An append-only JSON-lines log file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def append(self, entry: LogEntry) -> None:
        """Append one line and make it durable (fsync) before returning."""
        line = json.dumps(entry.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def read_log(path: str | os.PathLike[str]) -> list[LogEntry]:
    """Every entry of a log, in order; :class:`AuditLogError` names the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditLogError(f"{path}: cannot read the audit log: {exc}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(LogEntry.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(f"{path}:{number}: not a valid audit log line: {exc}") from None
    return entries
