"""The report's WeaveRec section: per target, the weaving models on the target's own
users beside the baselines WeaveRec is judged against (target-only and source-only
adapters, the plain merge of every domain's adapter, FedAvg of adapters), and what
weaving cost on the wire."""

from __future__ import annotations

from typing import Any

from silorec.results.markdown import (
    DASH,
    code,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    fmt_value,
    md_table,
)
from silorec.results.schema import RunResults

METRICS = ("recall@10", "ndcg@10")


def weave_entries(facts: dict[str, Any], weave: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, label) of every model to show for one target (``facts``: its entry in
    ``weave["targets"]``), baselines first, oracles last (the report and
    ``benchmarks/bench_weave.py`` show the same rows)."""
    out: list[tuple[str, str]] = []
    if facts.get("target_only"):
        out.append(("target-only adapter", facts["target_only"]))
    out += [
        (f"source-only adapter ({s})", label) for s, label in facts.get("source_only", {}).items()
    ]
    out += [("plain merge of adapters", label) for label in weave.get("plain_merge", [])]
    if weave.get("fedavg"):
        out.append(("FedAvg of adapters", weave["fedavg"]))
    out += [(f"hybrid with {s}, alone", label) for s, label in facts.get("hybrids", {}).items()]
    out += [("**WeaveRec (data-isolated)**", label) for label in facts.get("fused", [])]
    if weave.get("pooled_adapter"):
        out.append(("pooled adapter (oracle: breaks isolation)", weave["pooled_adapter"]))
    if facts.get("pooled_weave"):
        out.append(("pooled WeaveRec (oracle: breaks isolation)", facts["pooled_weave"]))
    return out


def _start(weave: dict[str, Any]) -> str:
    return (
        "the target's own adapter" if weave.get("hybrid_start") == "target" else "a fresh adapter"
    )


def weave_section(r: RunResults, split: str) -> list[str]:
    """The section, or nothing when the run did not weave."""
    weave = r.weave
    if not weave or not weave.get("targets"):
        return []
    steps = weave.get("steps") or []
    sent = sum(int(s.get("bytes_sent", 0)) for s in steps)
    received = sum(int(s.get("bytes_received", 0)) for s in steps)
    visits = sum(len(s.get("visits", {})) for s in steps)
    out = [
        "## WeaveRec, data-isolated",
        "",
        f"Adapters: LoRA rank {weave.get('rank')}, α {weave.get('alpha') or weave.get('rank')}, "
        f"on layers {', '.join(weave.get('layers') or [])}: "
        f"{int(weave.get('adapter_parameters', 0)):,} parameters, "
        f"{fmt_bytes(weave.get('adapter_bytes'))} per adapter (the whole model: "
        f"{fmt_bytes(weave.get('model_bytes'))}). Each hybrid wove {weave.get('rounds')} round(s) "
        f"of {weave.get('epochs_per_visit')} epoch(s) per visit, {weave.get('schedule')}, "
        f"starting from {_start(weave)}"
        f"{', then one early-stopped visit to its target' if weave.get('finish_on_target') else ''}. "
        f"{len(steps)} grid steps, {visits} node visits: {fmt_bytes(sent)} to the nodes "
        f"(each visit carries θ0 and the adapter), {fmt_bytes(received)} back (adapters "
        f"only), {fmt_seconds(r.timings.get('weave'))} in all. Only adapters and metrics "
        "left the nodes; no node saw another's data.",
        "",
    ]
    for target, facts in weave["targets"].items():
        reference = r.value(facts.get("target_only") or "", target, split, METRICS[0])
        rows = []
        for role, label in weave_entries(facts, weave):
            values = [r.value(label, target, split, m) for m in METRICS]
            ratio = values[0] / reference if values[0] is not None and reference else None
            rows.append([role, code(label), *[fmt_value(v) for v in values], fmt_ratio(ratio)])
        header = ["model", "label", *[f"{split} {m}" for m in METRICS], "× target-only R@10"]
        out += [
            f"### Target `{target}` (sources: {', '.join(facts.get('sources') or []) or DASH})",
            "",
            md_table(header, rows, ["l", "l", "r", "r", "r"]),
            "",
        ]
    return out
