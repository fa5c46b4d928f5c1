"""Merge quality over seeds: the table and targets of the merge-quality issue.

Reads finished runs of one scenario, one per seed (``silorec run SCENARIO --seeds 0 1
2 --out DIR`` writes ``DIR/seed-<s>``), and prints, for every merge, means over the
seeds ± the half-width of their 95% confidence interval (Student's t over per-seed
values; every ratio is computed per seed, then summarised):

- test Recall@10 and NDCG@10, mean over the merged domains;
- gain kept = (merge − θ0) ÷ (specialist in-domain − θ0);
- ratios against the best λ-tuned training-free merge (chosen on validation), the
  paper's fixed-λ baselines (average, TA λ = 0.3), the specialists and Joint;
- each unseen domain against θ0 and the best single source (chosen on validation);
- the merge's server time and how far its peak resident memory rose above what the
  process held when it started (+MiB; as the run recorded them).

Then it checks the issue's targets for the best weights-only merge, chosen on the
validation mean (never on test), and says PASS or MISS with the figures.

    python benchmarks/bench_merge_quality.py runs/amazon-seeds          # seed-* inside
    python benchmarks/bench_merge_quality.py RUN_DIR [RUN_DIR ...] --out table.md
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from silorec.evaluation.paired import SeedSummary
from silorec.results import MEAN_MERGED, RunResults, load_run
from silorec.results.analysis import gain_share, unseen_transfer

#: The reference methods whose λ the scenario's grid tunes ("λ-tuned training-free").
LAMBDA_TUNED = {"average", "task_arithmetic", "ties", "dare"}
AVERAGE = "average"
TA_FIXED = "task_arithmetic(lambda=0.3)"
JOINT_KIND = "oracle"

#: The issue's floor for the best weights-only merge.
TARGETS = {
    "vs_tuned": 1.10,
    "vs_joint": 0.90,
    "gain_kept": 0.5,
    "unseen_vs_theta0": 1.0,
    "unseen_vs_source": 2.0,
}


def load_runs(paths: Sequence[Path]) -> list[RunResults]:
    """Runs from run directories, or from folders holding ``seed-*`` run directories."""
    runs = []
    for path in paths:
        seeds = sorted(path.glob("seed-*")) if not (path / "results.json").is_file() else [path]
        if not seeds:
            raise SystemExit(f"{path}: neither a run directory nor a folder of seed-* runs")
        runs.extend(load_run(p) for p in seeds)
    names = {run.scenario_name for run in runs}
    if len(names) != 1:
        raise SystemExit(f"runs of different scenarios: {sorted(names)}")
    return runs


def _merge_method(run: RunResults, label: str) -> tuple[str, bool]:
    for info in run.merges:
        if info.get("label") == label:
            return str(info.get("method")), bool(info.get("learned"))
    return "", False


def tuned_reference(run: RunResults) -> str | None:
    """The λ-tuned training-free merge with the best validation mean in this run."""
    valid = run.table("valid", "recall@10")
    candidates = [m for m in run.models("merge") if _merge_method(run, m)[0] in LAMBDA_TUNED]
    scores = {m: valid.loc[m, MEAN_MERGED] for m in candidates if m in valid.index}
    scores = {m: v for m, v in scores.items() if not math.isnan(v)}
    return max(scores, key=lambda m: scores[m]) if scores else None


def specialists_mean(run: RunResults, split: str, metric: str) -> float:
    """Each merged domain's own specialist on that domain, averaged."""
    table = run.table(split, metric)
    individuals = run.individual_models()
    values = [table.loc[individuals[d], d] for d in run.domains("merged") if d in individuals]
    return sum(values) / len(values) if values else math.nan


def _joint(run: RunResults) -> str | None:
    oracles = run.models(JOINT_KIND)
    return oracles[0] if oracles else None


def per_seed_figures(run: RunResults) -> dict[str, dict[str, float]]:
    """merge -> figure name -> this seed's value."""
    test = run.table("test", "recall@10")
    ndcg = run.table("test", "ndcg@10")
    valid = run.table("valid", "recall@10")
    base = run.base_model()
    theta0 = test.loc[base, MEAN_MERGED] if base else math.nan
    specialists = specialists_mean(run, "test", "recall@10")
    reference = tuned_reference(run)
    joint = _joint(run)
    ratio_to: dict[str, float] = {
        "vs_tuned": test.loc[reference, MEAN_MERGED] if reference else math.nan,
        "vs_average": test.loc[AVERAGE, MEAN_MERGED] if AVERAGE in test.index else math.nan,
        "vs_ta_0.3": test.loc[TA_FIXED, MEAN_MERGED] if TA_FIXED in test.index else math.nan,
        "vs_specialists": specialists,
        "vs_joint": test.loc[joint, MEAN_MERGED] if joint else math.nan,
    }
    unseen = unseen_transfer(run, "test")
    seconds = {str(m.get("label")): float(m.get("seconds", math.nan)) for m in run.merges}
    memory = {str(m.get("label")): m.get("peak_rss_added_mib") for m in run.merges}
    out: dict[str, dict[str, float]] = {}
    for merge in run.models("merge"):
        value = test.loc[merge, MEAN_MERGED]
        figures = {
            "recall@10": value,
            "ndcg@10": ndcg.loc[merge, MEAN_MERGED],
            "valid recall@10": valid.loc[merge, MEAN_MERGED],
            "gain_kept": gain_share(value, specialists, theta0),
            "seconds": seconds.get(merge, math.nan),
            "peak_rss_mib": float(memory[merge]) if memory.get(merge) is not None else math.nan,
        }
        for name, denominator in ratio_to.items():
            figures[name] = value / denominator if denominator and denominator > 0 else math.nan
        for _, row in unseen.iterrows():
            domain = row["domain"]
            figures[f"{domain}"] = float(row[merge])
            figures[f"{domain}_vs_theta0"] = float(row[merge]) / float(row["theta0"])
            figures[f"{domain}_vs_source"] = float(row[merge]) / float(row["best_individual"])
        out[merge] = figures
    return out


def summarise(runs: Sequence[RunResults]) -> dict[str, dict[str, SeedSummary]]:
    """merge -> figure -> its seed-level summary (merges present in every run)."""
    seeds = [per_seed_figures(run) for run in runs]
    merges = [m for m in seeds[0] if all(m in s for s in seeds)]
    return {
        merge: {name: SeedSummary.of([s[merge][name] for s in seeds]) for name in seeds[0][merge]}
        for merge in merges
    }


def _cell(summary: SeedSummary, scale: float = 1.0, digits: int = 4) -> str:
    if math.isnan(summary.mean):
        return "—"
    mean = f"{scale * summary.mean:.{digits}f}"
    if math.isnan(summary.half_width):
        return mean
    return f"{mean} ± {scale * summary.half_width:.{digits}f}"


def render(runs: Sequence[RunResults], summary: dict[str, dict[str, SeedSummary]]) -> str:
    first = runs[0]
    unseen = first.domains("unseen")
    seeds = sorted(int(r.seeds.get("scenario", 0)) for r in runs)
    references = sorted({tuned_reference(r) or "—" for r in runs})
    base = first.base_model()
    theta0 = SeedSummary.of([r.table("test", "recall@10").loc[base, MEAN_MERGED] for r in runs])
    specialists = SeedSummary.of([specialists_mean(r, "test", "recall@10") for r in runs])
    joint = [_joint(r) for r in runs]
    joint_values = [r.table("test", "recall@10").loc[j, MEAN_MERGED]
                    for r, j in zip(runs, joint, strict=True) if j]  # fmt: skip
    lines = [
        f"# Merge quality: `{first.scenario_name}`, seeds {', '.join(map(str, seeds))}",
        "",
        "Means over seeds ± half-width of the 95% CI (Student's t over per-seed values);",
        "ratios are computed per seed, then summarised. Merged-domain means of test",
        f"Recall@10: θ0 {_cell(theta0)}, specialists in-domain {_cell(specialists)}, Joint "
        f"{_cell(SeedSummary.of(joint_values))} ({len(joint_values)} seed(s)). λ-tuned "
        f"reference (validation, per seed): {', '.join(f'`{r}`' for r in references)}.",
        "",
    ]
    header = ["merge", "R@10", "NDCG@10", "gain kept", "÷ tuned", "÷ avg", "÷ TA 0.3",
              "÷ spec.", "÷ Joint"]  # fmt: skip
    for domain in unseen:
        header += [domain, f"{domain} ÷ θ0", f"{domain} ÷ source"]
    header += ["s", "+MiB"]
    lines += ["| " + " | ".join(header) + " |", "|" + " :--- |" + " ---: |" * (len(header) - 1)]
    for merge, figures in summary.items():
        cells = [f"`{merge}`", _cell(figures["recall@10"]), _cell(figures["ndcg@10"]),
                 _cell(figures["gain_kept"], 100, 1)]  # fmt: skip
        cells += [_cell(figures[k], 1, 3) for k in
                  ("vs_tuned", "vs_average", "vs_ta_0.3", "vs_specialists", "vs_joint")]  # fmt: skip
        for domain in unseen:
            cells += [_cell(figures[domain]), _cell(figures[f"{domain}_vs_theta0"], 1, 3),
                      _cell(figures[f"{domain}_vs_source"], 1, 2)]  # fmt: skip
        cells += [_cell(figures["seconds"], 1, 1), _cell(figures["peak_rss_mib"], 1, 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + target_lines(runs, summary)) + "\n"


def target_lines(
    runs: Sequence[RunResults], summary: dict[str, dict[str, SeedSummary]]
) -> list[str]:
    """PASS/MISS for the best weights-only merge (best validation mean over seeds)."""
    if not summary:
        return ["No merge is present in every run."]
    best = max(summary, key=lambda m: summary[m]["valid recall@10"].mean)
    figures = summary[best]
    unseen = runs[0].domains("unseen")
    checks: list[tuple[str, str, float]] = [
        ("÷ best λ-tuned training-free", "vs_tuned", TARGETS["vs_tuned"]),
        ("÷ Joint", "vs_joint", TARGETS["vs_joint"]),
        ("gain kept", "gain_kept", TARGETS["gain_kept"]),
    ]
    for domain in unseen:
        checks.append((f"{domain} ÷ θ0", f"{domain}_vs_theta0", TARGETS["unseen_vs_theta0"]))
        checks.append((f"{domain} ÷ best single source", f"{domain}_vs_source",
                       TARGETS["unseen_vs_source"]))  # fmt: skip
    lines = [f"## Targets for the best merge on validation: `{best}`", "",
             "| target | floor | measured (mean ± 95% CI) | verdict |",
             "| :--- | ---: | ---: | :--- |"]  # fmt: skip
    for name, key, floor in checks:
        value: SeedSummary = figures[key]
        verdict = "PASS" if value.mean >= floor else f"MISS by {floor - value.mean:.3f}"
        lines.append(f"| {name} | {floor:g} | {_cell(value, 1, 3)} | {verdict} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or seed folders")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    runs = load_runs(args.runs)
    text = render(runs, summarise(runs))
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
