"""WeaveRec (data-isolated) over seeds: the table and targets of the WeaveRec issue.

Reads finished weaving runs of one scenario, one per seed (``silorec run SCENARIO
--seeds 0 1 2 --out DIR`` writes ``DIR/seed-<s>``), and prints, per target domain, on
the target's own test users, means over seeds ± the half-width of their 95%
confidence interval (Student's t over the per-seed values; ratios are computed per
seed, then summarised):

- the target-only adapter, each source-only adapter, the plain merge of every
  domain's adapter and FedAvg of adapters (the baselines), each hybrid alone and each
  fused WeaveRec model;
- the best fused model and the best plain merge, each chosen on the target's
  validation Recall@10 (mean over seeds; never on test), against the target-only
  adapter and each other: per-seed ratio, paired difference over seeds and its p;
- bytes moved per weaving step and the phase's wall time.

Then it checks the issue's targets (fused ≥ target-only and ≥ the best plain merge,
and ≥ 0.95 x pooled WeaveRec, on the seed mean) and says PASS or MISS with the
figures. The pooled-data oracles come from ``weave.pooled_oracles = true``.

    python benchmarks/bench_weave.py runs/weave-seeds           # seed-* inside
    python benchmarks/bench_weave.py RUN_DIR [RUN_DIR ...] --out table.md
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from silorec.evaluation.paired import SeedSummary
from silorec.results import RunResults, load_run
from silorec.results.weave_report import weave_entries

METRIC = "recall@10"


def find_runs(paths: Sequence[Path]) -> list[RunResults]:
    """Completed weaving runs under ``paths`` (a run directory, or a folder of them)."""
    dirs: list[Path] = []
    for path in paths:
        if (path / "results.json").is_file():
            dirs.append(path)
        else:
            dirs += sorted(p for p in path.iterdir() if (p / "results.json").is_file())
    runs = [load_run(d) for d in dirs]
    runs = [r for r in runs if r.status == "completed" and r.weave.get("targets")]
    if not runs:
        raise SystemExit(f"no completed weaving run found under {', '.join(map(str, paths))}")
    return runs


def values(runs: Sequence[RunResults], label: str, domain: str, split: str) -> list[float]:
    out = []
    for run in runs:
        v = run.value(label, domain, split, METRIC)
        out.append(math.nan if v is None else float(v))
    return out


def fmt(summary: SeedSummary, digits: int = 4) -> str:
    if summary.n == 0 or math.isnan(summary.mean):
        return "—"
    if summary.n < 2:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.half_width:.{digits}f}"


def best_on_validation(
    runs: Sequence[RunResults], labels: Sequence[str], target: str
) -> str | None:
    scored = [(SeedSummary.of(values(runs, x, target, "valid")).mean, x) for x in labels]
    scored = [(s, x) for s, x in scored if not math.isnan(s)]
    return max(scored)[1] if scored else None


def ratio(runs: Sequence[RunResults], a: str, b: str, target: str) -> SeedSummary:
    return SeedSummary.of([x / y if y else math.nan for x, y in
                           zip(values(runs, a, target, "test"), values(runs, b, target, "test"),
                               strict=True)])  # fmt: skip


def paired(runs: Sequence[RunResults], a: str, b: str, target: str) -> SeedSummary:
    return SeedSummary.of([x - y for x, y in zip(values(runs, a, target, "test"),
                                                 values(runs, b, target, "test"), strict=True)])  # fmt: skip


def target_lines(runs: Sequence[RunResults], target: str) -> tuple[list[str], list[str]]:
    """The table of one target and its target checks."""
    weave = runs[0].weave
    facts = weave["targets"][target]
    labels = weave_entries(facts, weave)
    lines = [f"### Target `{target}` ({len(runs)} seeds; test {METRIC} on {target})", "",
             "| model | label | valid | test |", "| :--- | :--- | ---: | ---: |"]  # fmt: skip
    for role, label in labels:
        lines.append(f"| {role} | `{label}` | {fmt(SeedSummary.of(values(runs, label, target, 'valid')))} "
                     f"| {fmt(SeedSummary.of(values(runs, label, target, 'test')))} |")  # fmt: skip
    lines.append("")
    if not facts.get("pooled_weave"):
        lines += ["The pooled-data oracles were not run (`weave.pooled_oracles = true`, "
                  "in-process engine).", ""]  # fmt: skip
    checks: list[str] = []
    fused = best_on_validation(runs, facts.get("fused", []), target)
    plain = best_on_validation(runs, weave.get("plain_merge", []), target)
    own = facts.get("target_only")
    if fused is None or own is None:
        return lines, [f"- {target}: MISS: no fused model or no target-only adapter to compare"]
    targets = [("target-only adapter", own, 1.0), ("best plain merge", plain, 1.0),
               ("pooled WeaveRec (oracle)", facts.get("pooled_weave"), 0.95)]  # fmt: skip
    for name, reference, floor in targets:
        if reference is None:
            continue
        r, d = ratio(runs, fused, reference, target), paired(runs, fused, reference, target)
        verdict = "PASS" if r.mean >= floor else "MISS"
        evidence = (f"paired difference {d.mean:+.4f} [{d.ci_low:+.4f}, {d.ci_high:+.4f}], "
                    f"p {d.p:.3g}" if d.n >= 2 else
                    f"difference {d.mean:+.4f} (1 seed: no interval, no test)")  # fmt: skip
        checks.append(f"- {target}: `{fused}` vs {name} `{reference}`: {fmt(r, 3)} x; "
                      f"{evidence}: {verdict} (target ≥ {floor:g})")  # fmt: skip
    return lines, checks


def cost_lines(runs: Sequence[RunResults]) -> list[str]:
    weave = runs[0].weave
    steps = [s for r in runs for s in r.weave.get("steps", [])]
    per_step_up = SeedSummary.of([s["bytes_received"] / max(len(s["visits"]), 1) for s in steps])
    per_step_down = SeedSummary.of([s["bytes_sent"] / max(len(s["visits"]), 1) for s in steps])
    wall = SeedSummary.of([r.timings.get("weave", math.nan) for r in runs])
    return [
        f"Adapter: {weave['adapter_parameters']:,} parameters, {weave['adapter_bytes'] / 1024:.1f} KiB "
        f"(model {weave['model_bytes'] / 1024:.1f} KiB). Per visit: "
        f"{per_step_down.mean / 1024:.1f} KiB to the node (θ0 and the adapter), "
        f"{per_step_up.mean / 1024:.1f} KiB back (the adapter and metrics). Weaving phase wall "
        f"time {fmt(wall, 1)} s per seed ({len(runs[0].weave.get('steps', []))} grid steps).",
        "",
    ]


def render(runs: Sequence[RunResults]) -> str:
    weave = runs[0].weave
    head = [f"## WeaveRec, data-isolated: `{runs[0].scenario_name}`, seeds "
            f"{', '.join(str(r.seeds.get('scenario')) for r in runs)}", "",
            f"Rank {weave['rank']}, {weave['rounds']} round(s) x {weave['epochs_per_visit']} "
            f"epoch(s) per visit, {weave['schedule']}, hybrids start from "
            f"{weave.get('hybrid_start', 'fresh')}, finish on target: "
            f"{weave.get('finish_on_target', False)}. Mean ± 95% CI over seeds.", ""]  # fmt: skip
    body: list[str] = []
    checks: list[str] = []
    for target in weave["targets"]:
        lines, found = target_lines(runs, target)
        body += lines
        checks += found
    return "\n".join([*head, *cost_lines(runs), *body, "### Targets", "", *checks]) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    text = render(find_runs(args.runs))
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
