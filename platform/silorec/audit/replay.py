"""The node's checks, judged and repeated from the logs.

- :func:`verdict_findings`: what each node's guard decided (a blocked reply is a
  *fail*: the node tried to send it; a reply with no verdict was never checked);
- :func:`replay_policy`: the wire policy again on every logged reply, with the
  expectations the logs and the run's scenario give (the node's describe reply says
  its catalogue size and text dimension; the scenario says the model);
- :func:`replay_scans`: the identifier and item-run detectors again on every string
  the logs hold (names, keys, values, error reasons), for the domains whose data a
  :data:`ScannerLookup` can provide (node side; the server never has it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from silorec.audit.findings import Finding
from silorec.audit.log import LogEntry
from silorec.audit.policy import WeightSpec, WireExpectations, check_reply
from silorec.audit.verdict import Violation
from silorec.wire import protocol

#: Rules of the leakage detectors (the rest are the wire policy's).
DETECTOR_RULES = frozenset({"sequence", "identifier", "canary"})


class TextScanner(Protocol):
    """Detectors over one domain's data (see :class:`silorec.node.guard.DomainScanners`)."""

    def scan_text(self, where: str, text: str) -> list[Violation]: ...


#: Domain name -> its detectors, or None when its data is not available here.
ScannerLookup = Callable[[str], TextScanner | None]


def verdict_findings(replies: Iterable[LogEntry]) -> list[Finding]:
    """Findings from the verdicts in a node's log."""
    findings = []
    for entry in replies:
        verdict = entry.verdict
        where = {"node_id": entry.node_id, "domain": entry.domain}
        if verdict is None:
            findings.append(
                Finding(
                    "fail",
                    "policy",
                    f"{entry.label} was sent without a "
                    "wire-policy verdict: the policy mod did not check it",
                    **where,
                )
            )
        elif not verdict.allowed:
            tried = verdict.blocked.summary() if verdict.blocked else "unknown content"
            rules = {v.rule for v in verdict.violations}
            check = "detector" if rules & DETECTOR_RULES else "policy"
            findings.append(
                Finding(
                    "fail",
                    check,
                    f"{entry.label} was blocked. It tried to "
                    f"send {tried}. Violations: {verdict.reason()}",
                    **where,
                )
            )
        elif verdict.redactions:
            findings.append(
                Finding(
                    "warning",
                    "redaction",
                    f"{entry.label}: "
                    f"{verdict.redactions} identifier(s) were redacted from "
                    "its error reason before it was sent",
                    **where,
                )
            )
    return findings


def expectations_from_logs(
    domain: str,
    replies: Iterable[LogEntry],
    weights_for: Callable[[int], WeightSpec],
    *,
    item_texts_allowed: bool = False,
    metric_ks: tuple[int, ...] | None = None,
    adapter_for: Callable[[int], WeightSpec] | None = None,
) -> WireExpectations | None:
    """What a node's replies must match, from its logged describe reply (None when
    there is none: then its replies cannot be judged). ``item_texts_allowed``: the
    run's scenario lets train replies carry the catalogue's texts (their content cannot
    be checked here, only their count and types); ``adapter_for``: a weaving
    scenario's adapter spec by text size."""
    for entry in replies:
        if entry.message_type == protocol.DESCRIBE and entry.error is None:
            metrics = entry.payload.record(protocol.METRICS)
            if metrics is None:
                continue
            try:
                text_dim = int(metrics.entries["text_dim"])
                n_items = int(metrics.entries["n_items"])
            except (KeyError, TypeError, ValueError):
                continue
            return WireExpectations(
                domain, weights_for(text_dim), n_items, text_dim, item_texts_allowed,
                metric_ks=metric_ks,
                adapter=adapter_for(text_dim) if adapter_for is not None else None,
            )  # fmt: skip
    return None


def replay_policy(replies: Iterable[LogEntry], expected: WireExpectations) -> list[Finding]:
    """The wire policy on every logged reply that was sent with content."""
    findings = []
    for entry in replies:
        if entry.error is not None:
            continue
        for violation in check_reply(entry.message_type, entry.payload, expected):
            findings.append(
                Finding(
                    "fail",
                    "policy",
                    f"{entry.label}, replayed: {violation}",
                    entry.node_id,
                    expected.domain,
                )
            )
    return findings


def replay_scans(replies: Iterable[LogEntry], scanner: TextScanner) -> list[Finding]:
    """The detectors on every string of the logged replies."""
    findings = []
    for entry in replies:
        for where, text in _texts(entry):
            for violation in scanner.scan_text(where, text):
                findings.append(
                    Finding(
                        "fail",
                        "detector",
                        f"{entry.label}, replayed: {violation}",
                        entry.node_id,
                        entry.domain,
                    )
                )
    return findings


def _texts(entry: LogEntry) -> Iterator[tuple[str, str]]:
    """``(where, text)`` for every string in a log entry."""
    if entry.error is not None:
        yield "error reason", entry.error.reason
    for record in entry.payload.records:
        yield f"record name '{record.name}'", record.name
        for array in record.arrays:
            yield f"array name '{record.name}/{array.name}'", array.name
        for key, value in record.entries.items():
            yield f"{record.kind} '{record.name}' key", key
            for text in _strings(value):
                yield f"{record.kind} '{record.name}' key '{key}'", text


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
