"""``silorec audit RUN_DIR``: everything the logs of one run can prove.

Reads the server's log (``<run>/audit/server.jsonl``) and the nodes' logs (the run's
``audit/node-*.jsonl``, or files collected from a deployment's nodes), keeps the
entries of the server's run, and checks:

1. every node that took part has a log (*fail* otherwise: its sends are unverifiable);
2. node and server logs agree, reply by reply (:mod:`silorec.audit.crosscheck`);
3. no node's guard blocked a reply, and every reply has its guard's verdict;
4. the wire policy holds on every logged reply, replayed against the run's
   ``scenario.toml`` (:mod:`silorec.audit.replay`);
5. the identifier and item-run detectors find nothing in the logged strings, for
   each domain whose data this machine has (given as a :data:`ScannerLookup`).

The result is an :class:`AuditReport`: PASS when there is no *fail* finding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from silorec.audit.crosscheck import cross_check
from silorec.audit.findings import Finding
from silorec.audit.log import (
    AUDIT_DIR,
    LOG_SUFFIX,
    NODE_LOG_PREFIX,
    SERVER_AUDIT_LOG,
    AuditLogError,
    LogEntry,
    now_utc,
    read_log,
)
from silorec.audit.replay import (
    ScannerLookup,
    expectations_from_logs,
    replay_policy,
    replay_scans,
    verdict_findings,
)
from silorec.models import WeightSpec, model_adapter_spec, model_weight_spec
from silorec.scenario import Scenario, ScenarioError, load_scenario
from silorec.wire import protocol

SCENARIO_COPY = "scenario.toml"

#: What each record of a reply is, in a privacy reviewer's words.
DATA_KINDS = {
    protocol.WEIGHTS: "model weights",
    protocol.ITEM_EMBEDDINGS: "item text embeddings",
    protocol.ITEM_TEXTS: "item texts",
    protocol.METRICS: "scalar metrics",
    protocol.PAIRS: "scalar metrics",
    protocol.INFO: "domain name",
}


@dataclass(frozen=True)
class NodeSummary:
    """One node's traffic in the run, as the logs tell it."""

    node_id: int
    domain: str | None
    has_log: bool
    messages_received: int  # instructions the server sent it
    bytes_received: int
    replies: int  # replies it sent (error replies included)
    bytes_sent: int
    data_sent: tuple[str, ...]  # kinds of data that left it
    blocked: int  # replies its guard blocked
    errors: int  # error replies (blocked ones included)


@dataclass(frozen=True)
class AuditReport:
    """The audit of one run."""

    run_dir: Path
    run_ids: tuple[int, ...]
    scenario: str | None
    server_log: Path
    node_logs: tuple[Path, ...]
    nodes: tuple[NodeSummary, ...]
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]  # what was checked, and what could not be
    generated_at: str = field(default_factory=now_utc)

    @property
    def passed(self) -> bool:
        return not any(f.severity == "fail" for f in self.findings)


def find_node_logs(run_dir: Path, given: Sequence[Path] = ()) -> list[Path]:
    """Node log files: those ``given`` (files, or folders holding ``node-*.jsonl``),
    else the run's own ``audit/node-*.jsonl``."""
    places = list(given) or [run_dir / AUDIT_DIR]
    found: list[Path] = []
    for place in places:
        if place.is_dir():
            found += sorted(place.glob(f"{NODE_LOG_PREFIX}*{LOG_SUFFIX}"))
        elif place.is_file():
            found.append(place)
        else:
            raise AuditLogError(f"{place}: no such node log file or folder")
    return found


def audit_run(
    run_dir: str | Path,
    node_logs: Sequence[Path] = (),
    scanners: Callable[[Scenario], ScannerLookup] | None = None,
) -> AuditReport:
    """Audit the run in ``run_dir`` (see the module docstring). ``node_logs``: where
    the nodes' logs are, when not in the run directory; ``scanners``: makes the
    detectors of the run's domains whose data this machine has (node side code, e.g.
    :func:`silorec.node.replay.local_scanners`)."""
    run_dir = Path(run_dir)
    findings: list[Finding] = []
    notes: list[str] = []
    server_path = run_dir / AUDIT_DIR / SERVER_AUDIT_LOG
    server = _read(server_path, findings)
    node_paths = find_node_logs(run_dir, node_logs)
    node_entries = [e for path in node_paths for e in _read(path, findings)]
    if not node_paths:
        findings.append(Finding("fail", "logs", "no node audit log found"))
    run_ids = sorted({e.run_id for e in server} or {e.run_id for e in node_entries})
    replies = [e for e in node_entries if e.event == "reply" and e.run_id in run_ids]
    if len(replies) < len(node_entries):
        notes.append(
            f"{len(node_entries) - len(replies)} node log entries of other runs were left out"
        )
    domains = _domains(server, replies)
    logged = {e.node_id for e in replies}
    for node_id in sorted({e.node_id for e in server} - logged):
        findings.append(
            Finding(
                "fail",
                "logs",
                "no audit log from this node: what it sent cannot be verified",
                node_id,
                domains.get(node_id),
            )
        )
    findings += cross_check(server, replies, domains, logged)
    findings += verdict_findings(replies)
    checked = _sent_replies(server, replies)
    scenario = _scenario(run_dir, findings)
    if scenario is not None:
        lookup = scanners(scenario) if scanners is not None else None
        findings += _replay(scenario, checked, domains, lookup, notes)
    return AuditReport(
        run_dir=run_dir,
        run_ids=tuple(run_ids),
        scenario=None if scenario is None else scenario.name,
        server_log=server_path,
        node_logs=tuple(node_paths),
        nodes=tuple(_summaries(server, replies, domains)),
        findings=tuple(findings),
        notes=tuple(notes),
    )


def _read(path: Path, findings: list[Finding]) -> list[LogEntry]:
    if not path.exists():
        findings.append(Finding("fail", "logs", f"{path}: missing"))
        return []
    try:
        return read_log(path)
    except AuditLogError as exc:
        findings.append(Finding("fail", "logs", str(exc)))
        return []


def _scenario(run_dir: Path, findings: list[Finding]) -> Scenario | None:
    try:
        return load_scenario(run_dir / SCENARIO_COPY)
    except (ScenarioError, OSError) as exc:
        findings.append(
            Finding(
                "fail",
                "logs",
                f"the run's scenario cannot be read, so the wire policy cannot be replayed: {exc}",
            )
        )
        return None


def _domains(server: Iterable[LogEntry], replies: Iterable[LogEntry]) -> dict[int, str | None]:
    """Node id -> domain: from the node's own log, else its describe reply."""
    domains: dict[int, str | None] = {}
    for entry in server:
        info = entry.payload.record(protocol.INFO)
        if entry.event == "received" and info is not None:
            domain = info.entries.get("domain")
            domains.setdefault(entry.node_id, str(domain) if domain is not None else None)
    for entry in replies:
        if entry.domain is not None:
            domains[entry.node_id] = entry.domain
    return domains


def _sent_replies(server: Iterable[LogEntry], replies: list[LogEntry]) -> list[LogEntry]:
    """Every reply to judge once: the nodes' own entries, plus replies the server
    received that no node logged."""
    logged = {e.reply_to_message_id for e in replies}
    unlogged = [e for e in server if e.event == "received" and e.reply_to_message_id not in logged]
    return replies + unlogged


def _adapter_spec_for(scenario: Scenario) -> Callable[[int], WeightSpec] | None:
    """A weaving scenario's adapter spec by text size (None: no adapters)."""
    weave = scenario.weave
    if not weave.enabled:
        return None
    return lambda dim: model_adapter_spec(scenario.model, dim, weave.rank, weave.layers)


def _replay(
    scenario: Scenario,
    replies: list[LogEntry],
    domains: dict[int, str | None],
    scanners: ScannerLookup | None,
    notes: list[str],
) -> list[Finding]:
    """Policy replay per node, and detector replay per domain with data here."""
    by_node: dict[int, list[LogEntry]] = defaultdict(list)
    for entry in replies:
        by_node[entry.node_id].append(entry)
    findings: list[Finding] = []
    scanned, unscanned = [], []
    for node_id, entries in sorted(by_node.items()):
        domain = domains.get(node_id)
        if domain is None:
            findings.append(
                Finding(
                    "fail",
                    "policy",
                    "the node never said which domain it holds: its replies cannot be judged",
                    node_id,
                )
            )
            continue
        expected = expectations_from_logs(
            domain,
            entries,
            lambda dim: model_weight_spec(scenario.model, dim),
            item_texts_allowed=scenario.uploads_item_texts,
            metric_ks=tuple(scenario.evaluation.ks),
            adapter_for=_adapter_spec_for(scenario),
        )
        if expected is None:
            notes.append(
                f"node {node_id} ('{domain}') logged no describe reply: the wire "
                "policy was not replayed on its replies"
            )
        else:
            findings += replay_policy(entries, expected)
        scanner = scanners(domain) if scanners is not None else None
        if scanner is None:
            unscanned.append(domain)
        else:
            scanned.append(domain)
            findings += replay_scans(entries, scanner)
    notes.append(f"wire policy replayed on {len(replies)} replies against the run's scenario")
    if scanned:
        notes.append(
            f"identifier and item-run scans replayed on the logged strings of: {', '.join(scanned)}"
        )
    if unscanned:
        notes.append(
            f"not replayed (the domain's data is not on this machine): {', '.join(unscanned)}"
        )
    return findings


def _summaries(
    server: list[LogEntry], replies: list[LogEntry], domains: dict[int, str | None]
) -> list[NodeSummary]:
    logged = {e.node_id for e in replies}
    node_ids = sorted({e.node_id for e in server} | logged)
    summaries = []
    for node_id in node_ids:
        sent_to = [e for e in server if e.event == "sent" and e.node_id == node_id]
        # What the node sent: its own log, else what the server received from it.
        mine = (
            [e for e in replies if e.node_id == node_id]
            if node_id in logged
            else [e for e in server if e.event == "received" and e.node_id == node_id]
        )
        kinds = sorted(
            {_data_kind(r.name) for e in mine if e.error is None for r in e.payload.records}
        )
        summaries.append(
            NodeSummary(
                node_id=node_id,
                domain=domains.get(node_id),
                has_log=node_id in logged,
                messages_received=len(sent_to),
                bytes_received=sum(e.payload.nbytes for e in sent_to),
                replies=len(mine),
                bytes_sent=sum(e.payload.nbytes for e in mine),
                data_sent=tuple(kinds),
                blocked=sum(1 for e in mine if e.verdict is not None and not e.verdict.allowed),
                errors=sum(1 for e in mine if e.error is not None),
            )
        )
    return summaries


def _data_kind(record_name: str) -> str:
    if record_name.startswith(protocol.RESULT_PREFIX):
        return DATA_KINDS[protocol.METRICS]
    return DATA_KINDS.get(record_name, f"other: {record_name}")
