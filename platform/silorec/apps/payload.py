"""Flower messages -> the audit's Flower-free forms (:mod:`silorec.audit.payload`) and
log entries: the one place that reads a message for the audit, on both sides."""

from __future__ import annotations

from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from silorec.audit.log import ErrorInfo, Event, LogEntry
from silorec.audit.payload import (
    NUMPY_STYPE,
    Payload,
    PayloadInfo,
    RecordKind,
    WireArray,
    WireRecord,
    describe,
)
from silorec.audit.verdict import Verdict


def payload_of(content: RecordDict) -> Payload:
    """The records of ``content`` with their data, in order."""
    records = []
    for name, record in content.items():
        if isinstance(record, ArrayRecord):
            arrays = {key: wire_array(array) for key, array in record.items()}
            records.append(WireRecord(name, "array", arrays=arrays))
        else:
            kind: RecordKind = "metric" if isinstance(record, MetricRecord) else "config"
            records.append(WireRecord(name, kind, entries=dict(record.items())))
    return Payload(tuple(records))


def wire_array(array: Array) -> WireArray:
    """A Flower array's values (numpy), or its raw bytes when they are not numpy."""
    if array.stype == NUMPY_STYPE:
        try:
            return WireArray.from_numpy(array.numpy())
        except ValueError:
            pass  # claims to be numpy but is not: described and scanned as raw bytes
    return WireArray.opaque(tuple(array.shape), str(array.dtype), array.stype, array.data)


def log_entry(
    message: Message,
    event: Event,
    *,
    node_id: int,
    domain: str | None = None,
    info: PayloadInfo | None = None,
    verdict: Verdict | None = None,
) -> LogEntry:
    """The log line of ``message`` (``info``: its description, if already made)."""
    meta = message.metadata
    error = None
    if message.has_error():
        error = ErrorInfo(int(message.error.code), str(message.error.reason))
        info = PayloadInfo()
    elif info is None:
        info = describe(payload_of(message.content))
    return LogEntry(
        event=event,
        message_type=meta.message_type,
        run_id=int(meta.run_id),
        node_id=int(node_id),
        group_id=meta.group_id,
        message_id=meta.message_id,
        reply_to_message_id=meta.reply_to_message_id,
        domain=domain,
        error=error,
        payload=info,
        verdict=verdict,
    )
