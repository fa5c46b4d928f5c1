"""What the audit found: each finding says which node, which check, and what.

A ``fail`` finding means the audit cannot vouch for the run (something was sent, or
tried to be, that the policy forbids, or the logs disagree); a ``warning`` is worth a
reviewer's look but proves no leak (e.g. a reply that timed out on the way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["fail", "warning"]
#: ``logs``: missing or unreadable logs; ``cross-check``: node and server logs
#: disagree; ``policy``/``detector``: what a node tried to send, or sent;
#: ``redaction``: identifiers removed from an error reason.
Check = Literal["logs", "cross-check", "policy", "detector", "redaction"]


@dataclass(frozen=True)
class Finding:
    """One thing the audit found."""

    severity: Severity
    check: Check
    message: str
    node_id: int | None = None
    domain: str | None = None

    @property
    def where(self) -> str:
        if self.node_id is None and self.domain is None:
            return "run"
        if self.domain is None:
            return f"node {self.node_id}"
        return f"node {self.node_id} (domain '{self.domain}')"

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "check": self.check,
            "node_id": self.node_id,
            "domain": self.domain,
            "message": self.message,
        }
