"""The audit report: ``audit.md`` for a privacy reviewer, ``audit.json`` for tools.

Both are rendered in memory first, then each is written atomically into the run
directory (a reader never sees half a report), ``audit.json`` last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from silorec.audit.auditor import AuditReport, NodeSummary
from silorec.results import write_text_atomic

AUDIT_MD = "audit.md"
AUDIT_JSON = "audit.json"


def verdict_word(report: AuditReport) -> str:
    return "PASS" if report.passed else "FAIL"


def report_json(report: AuditReport) -> dict[str, Any]:
    """The report as plain JSON data."""
    return {
        "verdict": verdict_word(report),
        "run_dir": str(report.run_dir),
        "run_ids": list(report.run_ids),
        "scenario": report.scenario,
        "generated_at": report.generated_at,
        "logs": {"server": str(report.server_log), "nodes": [str(p) for p in report.node_logs]},
        "nodes": [_node_json(n) for n in report.nodes],
        "findings": [f.to_json() for f in report.findings],
        "notes": list(report.notes),
    }


def _node_json(node: NodeSummary) -> dict[str, Any]:
    return {
        "node_id": node.node_id,
        "domain": node.domain,
        "has_log": node.has_log,
        "messages_received": node.messages_received,
        "bytes_received": node.bytes_received,
        "replies": node.replies,
        "bytes_sent": node.bytes_sent,
        "data_sent": list(node.data_sent),
        "blocked": node.blocked,
        "errors": node.errors,
    }


def render_markdown(report: AuditReport) -> str:
    """The human-readable report."""
    fails = [f for f in report.findings if f.severity == "fail"]
    warnings = [f for f in report.findings if f.severity == "warning"]
    lines = [
        f"# Privacy audit: {verdict_word(report)}",
        "",
        f"Run `{report.run_dir.name}` (scenario `{report.scenario or 'unknown'}`, Flower run "
        f"{', '.join(map(str, report.run_ids)) or 'unknown'}), audited {report.generated_at}.",
        f"{len(fails)} failure(s), {len(warnings)} warning(s).",
        "",
        "## What each node sent",
        "",
        "| node | domain | log | messages in | bytes in | replies out | bytes out | data that left "
        "| blocked | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for node in report.nodes:
        lines.append(
            f"| {node.node_id} | {node.domain or '?'} | {'yes' if node.has_log else '**no**'} "
            f"| {node.messages_received} | {node.bytes_received:,} | {node.replies} "
            f"| {node.bytes_sent:,} | {', '.join(node.data_sent) or '—'} | {node.blocked} "
            f"| {node.errors} |"
        )
    lines += ["", "## Findings", ""]
    if not report.findings:
        lines.append("None.")
    for finding in fails + warnings:
        lines.append(
            f"- **{finding.severity}** ({finding.check}, {finding.where}): "
            f"{_one_line(finding.message)}"
        )
    lines += ["", "## What was checked", ""]
    lines += [f"- {note}" for note in report.notes]
    lines += [f"- server log: `{report.server_log}`"]
    lines += [f"- node log: `{path}`" for path in report.node_logs]
    return "\n".join(lines) + "\n"


def write_report(report: AuditReport, run_dir: Path | None = None) -> list[Path]:
    """Write ``audit.md`` and ``audit.json`` (atomically, JSON last) into
    ``run_dir`` (default: the audited run's directory)."""
    folder = Path(run_dir or report.run_dir)
    markdown = render_markdown(report)
    data = json.dumps(report_json(report), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return [
        write_text_atomic(folder / AUDIT_MD, markdown),
        write_text_atomic(folder / AUDIT_JSON, data),
    ]


def _one_line(text: str) -> str:
    """Markdown-safe single line (a reason may hold newlines or pipes)."""
    return " ".join(text.split()).replace("|", "\\|")
