"""``silorec node check``: a data owner's check of their domain folder, on their own
machine, before their node joins a federation.

What is shown comes from the real thing: :mod:`silorec.engine.dry_run` runs the
project's own ServerApp and ClientApp in this process on a one-domain copy of the
federation's scenario (:func:`dry_run_scenario`), and the node's audit trail records
every reply exactly as the node's wire guard judged it before it would leave. This
module, free of Flower, makes that scenario, reads the folder's statistics, and
formats the replies without a single value (:func:`format_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from silorec.audit.log import LogEntry
from silorec.audit.payload import RecordInfo
from silorec.data.errors import DataError
from silorec.data.prepare import PreparedDomain, prepare_domain
from silorec.data.stats import format_before_after
from silorec.scenario import load_scenario, resolve_scenario_path
from silorec.scenario.schema import (
    AuditSettings,
    BaseSettings,
    DomainSpec,
    FederationSettings,
    GenericSource,
    OutputSettings,
    Scenario,
    SyntheticSource,
)

#: Local training epochs of the dry run: enough to produce every reply, cheap on big data.
DRY_RUN_EPOCHS = 1


class NodeCheckError(DataError):
    """A check that cannot run as asked (wrong domain, no data folder to read)."""


@dataclass(frozen=True)
class CheckTarget:
    """What is checked: the federation's scenario (or silorec's defaults), the domain
    the node serves, its data folder, and the scenario's folder (relative paths)."""

    scenario: Scenario
    domain: DomainSpec
    data_dir: Path
    base_dir: Path | None


def check_target(data_dir: Path, domain: str, scenario_ref: str | None = None) -> CheckTarget:
    """The node a SuperNode started with ``--node-config 'domain="DOMAIN"
    data-dir="DATA_DIR"'`` would serve under ``scenario_ref``; without a scenario,
    silorec's defaults with the folder in the generic format."""
    if scenario_ref is None:
        spec = DomainSpec(name=domain, data=GenericSource())
        scenario = Scenario(
            name="node-check", domains=[spec], federation=FederationSettings(min_domains=1)
        )
        base_dir = None
    else:
        scenario = load_scenario(scenario_ref)
        path = resolve_scenario_path(scenario_ref)
        base_dir = None if path is None else path.parent
        try:
            spec = scenario.domain(domain)
        except KeyError as exc:
            raise NodeCheckError(exc.args[0]) from None
    if isinstance(spec.data, SyntheticSource):
        raise NodeCheckError(
            f"domain '{domain}' of scenario '{scenario.name}' is synthetic: its node "
            f"generates its data and reads no folder (nothing to check in {data_dir})"
        )
    if not data_dir.is_dir():
        raise NodeCheckError(f"{data_dir}: no such folder (the domain's data folder)")
    return CheckTarget(scenario, spec, data_dir, base_dir)


def domain_statistics(target: CheckTarget) -> PreparedDomain:
    """The domain read and subsampled as its node will (a data error names the file,
    line or field); fills the prepared-data cache the dry run then reads."""
    return prepare_domain(
        target.domain, target.scenario.data, data_dir=target.data_dir, base_dir=target.base_dir
    )


def dry_run_scenario(target: CheckTarget) -> Scenario:
    """The federation's scenario cut down to this one domain for a dry run: the same
    data preparation, text encoder, model and evaluation, but one epoch of local
    training from a seeded θ0, no merges, no plots, and the audit on (it is what the
    check reads)."""
    settings = target.scenario.model_dump(mode="json", by_alias=True)
    settings.update(
        name=f"{target.scenario.name}-node-check",
        domains=[target.domain.model_dump(mode="json", by_alias=True)],
        merges=[],
        base=BaseSettings(seed=target.scenario.base.seed).model_dump(),
        federation=FederationSettings(min_domains=1).model_dump(),
        audit=AuditSettings(**{**settings["audit"], "enabled": True}).model_dump(),
        output=OutputSettings(plots=False).model_dump(),
    )
    settings["train"].update(epochs=DRY_RUN_EPOCHS)
    return Scenario.model_validate(settings)


# -- the report ---------------------------------------------------------------------


def format_report(
    target: CheckTarget,
    prepared: PreparedDomain,
    replies: Sequence[LogEntry],
    failure: str | None = None,
) -> str:
    """Statistics, then every reply the node sent in the dry run without its values
    (its records, array shapes and sizes, keys), with the guard's verdict; then why
    the dry run failed, if it did."""
    role = " (unseen: evaluated only, never trains or uploads)" if target.domain.unseen else ""
    title = f"domain '{target.domain.name}'{role}: {prepared.source}"
    lines = [
        format_before_after(prepared.raw_stats, prepared.stats, title=title),
        "",
        "What this node sends (a dry run of the real node; values never shown), each reply "
        "judged by its wire policy and leakage detectors before it may leave:",
    ]
    for entry in replies:
        lines.append(f"\n{_reply_headline(entry)}")
        lines.extend(_record_lines(record) for record in entry.payload.records)
        if entry.verdict is not None:
            lines.extend(f"  ! {violation}" for violation in entry.verdict.violations)
    if failure is not None:
        lines.append(f"\nthe dry run failed: {failure}")
    verdict = (
        "check passed: only model weights, catalogue text embeddings and scalar metrics leave"
        if passed(replies, failure)
        else "check FAILED: see the replies marked BLOCKED or ERROR above"
    )
    lines.append(f"\n{verdict}")
    return "\n".join(lines)


def passed(replies: Sequence[LogEntry], failure: str | None = None) -> bool:
    """Whether the dry run completed and the node sent every reply: none blocked by
    its guard, none an error."""
    return (
        failure is None
        and bool(replies)
        and all(e.error is None and (e.verdict is None or e.verdict.allowed) for e in replies)
    )


def _reply_headline(entry: LogEntry) -> str:
    group = f" ({entry.group_id})" if entry.group_id else ""
    if entry.error is not None:
        state = f"ERROR {entry.error.code}: {entry.error.reason}"
    elif entry.verdict is not None and not entry.verdict.allowed:
        state = "BLOCKED"
    else:
        state = "allowed"
    info = entry.payload
    return f"{entry.message_type} reply{group}: {len(info.records)} records, {info.nbytes:,} bytes: {state}"


def _record_lines(record: RecordInfo) -> str:
    if record.kind == "array":
        head = f"  {record.name} (arrays): {len(record.arrays)}, {record.nbytes:,} bytes"
        arrays = [
            f"    {a.name}  {a.dtype} {list(a.shape)}  {a.nbytes:,} bytes" for a in record.arrays
        ]
        return "\n".join([head, *arrays])
    keys = ", ".join(f"{key} ({type(value).__name__})" for key, value in record.entries.items())
    return f"  {record.name} ({record.kind}): {keys or 'empty'}"
