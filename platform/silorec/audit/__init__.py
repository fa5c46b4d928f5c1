"""The privacy audit: what left each domain node, proven from logs on both sides.

Server-safe: nothing here reads interactions or imports Flower, so the merge server
writes its side of the audit trail with it and a reviewer can run ``silorec audit``
anywhere. The parts that need a domain's data (the wire policy's node-side
expectations, the leakage detectors, canaries) live in :mod:`silorec.node.guard`;
the Flower glue (client mods, message descriptions) in :mod:`silorec.apps.mods` and
:mod:`silorec.apps.payload`. See ``docs/threat-model.md`` for what this proves.
"""

from silorec.audit.auditor import AuditReport, NodeSummary, audit_run, find_node_logs
from silorec.audit.findings import Finding
from silorec.audit.log import (
    AUDIT_DIR,
    SERVER_AUDIT_LOG,
    AuditLog,
    AuditLogError,
    ErrorInfo,
    LogEntry,
    node_log_name,
    read_log,
)
from silorec.audit.payload import (
    ArrayInfo,
    Payload,
    PayloadInfo,
    RecordInfo,
    WireArray,
    WireRecord,
    describe,
)
from silorec.audit.policy import WireExpectations, check_reply
from silorec.audit.report import AUDIT_JSON, AUDIT_MD, render_markdown, report_json, write_report
from silorec.audit.verdict import Verdict, Violation

__all__ = [
    "AUDIT_DIR",
    "AUDIT_JSON",
    "AUDIT_MD",
    "SERVER_AUDIT_LOG",
    "ArrayInfo",
    "AuditLog",
    "AuditLogError",
    "AuditReport",
    "ErrorInfo",
    "Finding",
    "LogEntry",
    "NodeSummary",
    "Payload",
    "PayloadInfo",
    "RecordInfo",
    "Verdict",
    "Violation",
    "WireArray",
    "WireExpectations",
    "WireRecord",
    "audit_run",
    "check_reply",
    "describe",
    "find_node_logs",
    "node_log_name",
    "read_log",
    "render_markdown",
    "report_json",
    "write_report",
]
