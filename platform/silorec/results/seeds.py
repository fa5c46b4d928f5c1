"""Several runs of one scenario with different seeds, summarised: mean ± standard
deviation of every model on every domain, and paired tests pooled over seeds.

Seeds change the model initialisation, local training and random merges, never the
data (see ``Scenario.with_seed``), so the runs evaluate the same users and their
paired statistics add up: a difference is tested over users x seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from silorec.results.analysis import (
    POOLED_ROW,
    accumulate_paired,
    best_training_free_merge,
    gain_share,
    paired_tests,
)
from silorec.results.io import write_bytes_atomic, write_json_atomic, write_text_atomic
from silorec.results.schema import MEAN_MERGED, RunResults, metric_display

SUMMARY_MD = "summary.md"
SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
HEADLINE = ("recall@10", "ndcg@10")


def seed_of(run: RunResults) -> int:
    return int(run.seeds.get("scenario", 0))


def stacked(runs: Sequence[RunResults], split: str, metric: str) -> pd.DataFrame:
    """Models x domains (with the means over merged and unseen domains) per seed,
    stacked with a ``seed`` index level."""
    frames = {seed_of(run): run.table(split, metric) for run in runs}
    return pd.concat(frames, names=["seed"])


def mean_std(
    runs: Sequence[RunResults], split: str, metric: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and sample standard deviation over seeds, models x domains."""
    grouped = stacked(runs, split, metric).groupby(level="model", sort=False)
    return grouped.mean(), grouped.std(ddof=1)


def pooled_paired_tests(
    runs: Sequence[RunResults], reference: str, split: str, metric: str
) -> pd.DataFrame:
    """Every model against ``reference``, per merged domain and pooled over merged
    domains, with users of every seed pooled: model, domain, n, mean_diff, p."""
    return paired_tests(accumulate_paired(runs, reference, split, metric))


def reference_merge(runs: Sequence[RunResults], metric: str = "recall@10") -> str | None:
    """The training-free merge best on validation, by its mean over seeds."""
    votes = [best_training_free_merge(run, metric) for run in runs]
    candidates = {v for v in votes if v}
    if not candidates:
        return None
    valid_mean, _ = mean_std(runs, "valid", metric)
    scores = {c: valid_mean.loc[c, MEAN_MERGED] for c in candidates if c in valid_mean.index}
    return max(scores, key=lambda c: scores[c]) if scores else None


def _cell(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if not math.isnan(std) else f"{mean:.4f}"


def render_summary(runs: Sequence[RunResults]) -> str:
    """Markdown: mean ± std tables (test), gain kept, unseen transfer, significance."""
    first = runs[0]
    seeds = sorted(seed_of(r) for r in runs)
    lines = [f"# silorec summary: `{first.scenario_name}`, {len(runs)} seeds ({seeds})", ""]
    if first.description:
        lines += [f"> {first.description}", ""]
    lines += ["Mean ± sample standard deviation over seeds. Seeds vary model initialisation, "
              "local training and random merges; the data are the same.", ""]  # fmt: skip
    for metric in HEADLINE:
        mean, std = mean_std(runs, "test", metric)
        columns = list(mean.columns)
        lines += [f"## {metric_display(metric)} (test)", "",
                  "| model | " + " | ".join(columns) + " |",
                  "| :--- | " + " | ".join("---:" for _ in columns) + " |"]  # fmt: skip
        for model in mean.index:
            cells = [_cell(mean.loc[model, c], std.loc[model, c]) for c in columns]
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _gain_lines(runs) + _significance_lines(runs)
    lines += ["## Runs", ""] + [f"- seed {seed_of(r)}: `{r.run_id}` ({r.status})" for r in runs]
    return "\n".join(lines).rstrip() + "\n"


def _gain_lines(runs: Sequence[RunResults]) -> list[str]:
    """Share of the fine-tuning gain each merge keeps (test Recall@10, means over
    merged domains), per seed then averaged."""
    mean_t, _ = mean_std(runs, "test", "recall@10")
    shares: dict[str, list[float]] = {}
    for run in runs:
        table = run.table("test", "recall@10")
        base = run.base_model()
        individuals = run.individual_models()
        merged = run.domains("merged")
        if base is None or not individuals or MEAN_MERGED not in table:
            continue
        individual_mean = sum(table.loc[individuals[d], d] for d in merged if d in individuals)
        individual_mean /= max(sum(1 for d in merged if d in individuals), 1)
        for merge in run.models("merge"):
            share = gain_share(table.loc[merge, MEAN_MERGED], individual_mean,
                               table.loc[base, MEAN_MERGED])  # fmt: skip
            shares.setdefault(merge, []).append(share)
    if not shares:
        return []
    lines = ["## Share of the fine-tuning gain kept (test Recall@10, merged domains)", "",
             "(merge − θ0) ÷ (individual in-domain − θ0), on the means over merged domains; "
             "mean over seeds.", "", "| merge | mean Recall@10 | gain kept |",
             "| :--- | ---: | ---: |"]  # fmt: skip
    for merge, values in shares.items():
        finite = [v for v in values if not math.isnan(v)]
        kept = f"{100 * sum(finite) / len(finite):.1f} %" if finite else "n/a"
        lines.append(f"| `{merge}` | {mean_t.loc[merge, MEAN_MERGED]:.4f} | {kept} |")
    return lines + [""]


def _significance_lines(runs: Sequence[RunResults]) -> list[str]:
    reference = reference_merge(runs)
    if reference is None:
        return []
    lines = [f"## Significance against `{reference}` (test)", "",
             f"`{reference}` is the best training-free merge on validation (mean over seeds). "
             "Paired t-tests over users, pooled over seeds; \\* p < 0.05, \\*\\* p < 0.01.", ""]  # fmt: skip
    for metric in HEADLINE:
        frame = pooled_paired_tests(runs, reference, "test", metric)
        if frame.empty:
            continue
        domains = [d for d in runs[0].domains("merged") if d in set(frame["domain"])] + [POOLED_ROW]
        lines += [f"### {metric_display(metric)}", "", "| model | " + " | ".join(domains) + " |",
                  "| :--- | " + " | ".join("---:" for _ in domains) + " |"]  # fmt: skip
        for model in dict.fromkeys(frame["model"]):
            cells = []
            for domain in domains:
                hit = frame[(frame["model"] == model) & (frame["domain"] == domain)]
                if hit.empty:
                    cells.append("—")
                    continue
                diff, p = float(hit["mean_diff"].iloc[0]) + 0.0, float(hit["p"].iloc[0])
                stars = "\\*\\*" if p < 0.01 else "\\*" if p < 0.05 else ""
                cells.append(f"{diff:+.4f}{stars} (p={p:.2g})")
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_summary(runs: Sequence[RunResults], folder: Path) -> list[Path]:
    """``summary.md``, ``summary.json`` (mean/std per model, domain, split, metric) and
    ``summary.csv`` (every seed's tidy rows) in ``folder``, each written atomically."""
    if not runs:
        raise ValueError("no runs to summarise")
    records = []
    for split in ("valid", "test"):
        for metric in HEADLINE:
            mean, std = mean_std(runs, split, metric)
            for model in mean.index:
                for domain in mean.columns:
                    records.append({"model": model, "domain": domain, "split": split,
                                    "metric": metric, "mean": _finite(mean.loc[model, domain]),
                                    "std": _finite(std.loc[model, domain]),
                                    "seeds": len(runs)})  # fmt: skip
    frames = [run.tidy_frame().assign(seed=seed_of(run)) for run in runs]
    csv = pd.concat(frames).to_csv(index=False, lineterminator="\n").encode()
    return [
        write_text_atomic(folder / SUMMARY_MD, render_summary(runs)),
        write_json_atomic(
            folder / SUMMARY_JSON,
            {
                "scenario": runs[0].scenario_name,
                "seeds": sorted(seed_of(r) for r in runs),
                "runs": [r.run_id for r in runs],
                "reference_merge": reference_merge(runs),
                "tables": records,
            },
        ),  # fmt: skip
        write_bytes_atomic(folder / SUMMARY_CSV, csv),
    ]


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
