"""What the node's guard decided about one reply: the rules it broke, if any.

Violations are worded for a privacy reviewer and sent to the merge server as the
reason of the error reply that replaces a blocked reply, so they name where the
problem is (record, array, key) and why, but never quote payload data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from silorec.audit.payload import PayloadInfo

#: ``allow-list``: a record, array or key the protocol does not allow;
#: ``type``: a dtype or value type that may not leave (integers, strings, bytes);
#: ``shape``: an array that does not match the model or the catalogue;
#: ``value``: an allowed key with a wrong value;
#: ``sequence``: 3+ consecutive item ids of a local user found in the bytes;
#: ``identifier``: a raw user or item identifier found in the bytes;
#: ``canary``: a planted canary user's items or identifier found.
Rule = Literal["allow-list", "type", "shape", "value", "sequence", "identifier", "canary"]
RULES: tuple[Rule, ...] = (
    "allow-list",
    "type",
    "shape",
    "value",
    "sequence",
    "identifier",
    "canary",
)


@dataclass(frozen=True)
class Violation:
    """One broken rule, with where it was found and why it matters."""

    rule: Rule
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}"

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "where": self.where, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Violation:
        rule = str(data["rule"])
        if rule not in RULES:
            raise ValueError(f"unknown rule '{rule}'")
        return cls(rule, str(data["where"]), str(data["detail"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Verdict:
    """The guard's decision on one reply.

    ``blocked`` describes (values withheld) what the handler tried to send when the
    reply was replaced by an error; ``redactions`` counts identifiers removed from an
    error reason; ``scan_seconds`` is the time the checks took.
    """

    violations: tuple[Violation, ...] = ()
    blocked: PayloadInfo | None = None
    redactions: int = 0
    scan_seconds: float = 0.0

    @property
    def allowed(self) -> bool:
        return not self.violations

    def reason(self) -> str:
        """All violations in one line, for an error reply and a log."""
        return "; ".join(str(v) for v in self.violations)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "allowed": self.allowed,
            "violations": [v.to_json() for v in self.violations],
            "redactions": self.redactions,
            "scan_seconds": round(self.scan_seconds, 6),
        }
        if self.blocked is not None:
            out["blocked"] = self.blocked.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verdict:
        blocked = data.get("blocked")
        return cls(
            violations=tuple(Violation.from_json(v) for v in data.get("violations", [])),
            blocked=None if blocked is None else PayloadInfo.from_json(blocked),
            redactions=int(data.get("redactions", 0)),
            scan_seconds=float(data.get("scan_seconds", 0.0)),
        )
