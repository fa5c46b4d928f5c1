"""Several runs of one scenario with different seeds, summarised at the seed level.

Seeds change the model initialisation, local training (on the nodes too) and random
merges, never the data or the evaluated users (see ``Scenario.with_seed`` and
``evaluation.users_seed``). The seeds are the replicates: every table gives the mean
over seeds with its 95% confidence interval (Student's t over the per-seed values),
and a model is compared with the reference merge by a paired t-test over seeds of
the per-seed differences, Holm-corrected over every comparison reported together.
Users of different seeds are the same users, so pooling them as independent pairs
(as an earlier version did) overstates significance; per-seed means avoid that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from silorec.evaluation.paired import SeedSummary, holm
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
    """Every model against ``reference`` with users of every seed pooled (model,
    domain, n, mean_diff, p). Kept for one run's users; over seeds the replicates are
    the seeds: use :func:`seed_level_tests`."""
    return paired_tests(accumulate_paired(runs, reference, split, metric))


def per_seed(runs: Sequence[RunResults], split: str, metric: str) -> pd.DataFrame:
    """Models x seeds: each seed's mean over the merged domains."""
    frames = {seed_of(run): run.table(split, metric).get(MEAN_MERGED) for run in runs}
    table = pd.DataFrame({s: f for s, f in frames.items() if f is not None})
    order = list(dict.fromkeys(m for f in frames.values() if f is not None for m in f.index))
    return table.reindex(order)  # the runs' model order, not alphabetical


def seed_summaries(
    runs: Sequence[RunResults], split: str, metric: str
) -> dict[tuple[str, str], SeedSummary]:
    """(model, domain column) -> the mean over seeds with its 95% CI."""
    table = stacked(runs, split, metric)
    out: dict[tuple[str, str], SeedSummary] = {}
    for model, frame in table.groupby(level="model", sort=False):
        for column in frame.columns:
            out[(str(model), str(column))] = SeedSummary.of(list(frame[column].astype(float)))
    return out


def seed_level_tests(
    runs: Sequence[RunResults], reference: str, split: str, metrics: Sequence[str]
) -> pd.DataFrame:
    """Every model against ``reference``, per merged domain and on the mean over merged
    domains (:data:`POOLED_ROW`), for each metric: the per-seed differences' mean, 95%
    CI and paired t-test over seeds, with p Holm-corrected over all rows returned.
    Columns: metric, model, domain, seeds, mean_diff, ci_low, ci_high, p, p_holm."""
    records = []
    merged = runs[0].domains("merged")
    for metric in metrics:
        table = stacked(runs, split, metric)
        if reference not in table.index.get_level_values("model"):
            continue
        ref = table.xs(reference, level="model")
        for model in dict.fromkeys(table.index.get_level_values("model")):
            if model == reference:
                continue
            values = table.xs(model, level="model")
            for column, label in [*((d, d) for d in merged), (MEAN_MERGED, POOLED_ROW)]:
                if column not in values.columns:
                    continue
                diffs = (values[column] - ref[column]).astype(float).tolist()
                summary = SeedSummary.of(diffs)
                records.append({"metric": metric, "model": model, "domain": label,
                                "seeds": summary.n, "mean_diff": summary.mean,
                                "ci_low": summary.ci_low, "ci_high": summary.ci_high,
                                "p": summary.p})  # fmt: skip
    frame = pd.DataFrame.from_records(
        records,
        columns=["metric", "model", "domain", "seeds", "mean_diff", "ci_low", "ci_high", "p"],
    )
    frame["p_holm"] = holm(frame["p"].tolist()) if len(frame) else []
    return frame


def reference_merge(runs: Sequence[RunResults], metric: str = "recall@10") -> str | None:
    """The training-free merge best on validation, by its mean over seeds."""
    votes = [best_training_free_merge(run, metric) for run in runs]
    candidates = {v for v in votes if v}
    if not candidates:
        return None
    valid_mean, _ = mean_std(runs, "valid", metric)
    scores = {c: valid_mean.loc[c, MEAN_MERGED] for c in candidates if c in valid_mean.index}
    return max(scores, key=lambda c: scores[c]) if scores else None


def _cell(summary: SeedSummary | None) -> str:
    if summary is None or math.isnan(summary.mean):
        return "—"
    if math.isnan(summary.half_width):
        return f"{summary.mean:.4f}"
    return f"{summary.mean:.4f} ± {summary.half_width:.4f}"


def render_summary(runs: Sequence[RunResults]) -> str:
    """Markdown: mean ± 95% CI tables (test), per-seed means, gain kept, unseen
    transfer, seed-level significance."""
    first = runs[0]
    seeds = sorted(seed_of(r) for r in runs)
    lines = [f"# silorec summary: `{first.scenario_name}`, {len(runs)} seeds ({seeds})", ""]
    if first.description:
        lines += [f"> {first.description}", ""]
    lines += ["Mean over seeds ± the half-width of its 95% confidence interval (Student's t, "
              f"{len(runs) - 1} degrees of freedom): the seeds are the replicates. Seeds "
              "vary model initialisation, local training on every node and random merges; "
              "the data are the same.", "", _users_line(runs), ""]  # fmt: skip
    for metric in HEADLINE:
        summaries = seed_summaries(runs, "test", metric)
        mean, _ = mean_std(runs, "test", metric)
        columns = list(mean.columns)
        lines += [f"## {metric_display(metric)} (test)", "",
                  "| model | " + " | ".join(columns) + " |",
                  "| :--- | " + " | ".join("---:" for _ in columns) + " |"]  # fmt: skip
        for model in mean.index:
            cells = [_cell(summaries.get((model, c))) for c in columns]
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _per_seed_lines(runs) + _gain_lines(runs) + _significance_lines(runs)
    lines += ["## Runs", ""] + [f"- seed {seed_of(r)}: `{r.run_id}` ({r.status})" for r in runs]
    return "\n".join(lines).rstrip() + "\n"


def _users_line(runs: Sequence[RunResults]) -> str:
    """Which users every seed evaluates, per domain (from the runs' own rows)."""
    settings = runs[0].scenario.get("evaluation", {})
    sample = settings.get("max_users")
    counts: dict[str, set[int]] = {}
    for run in runs:
        for row in run.rows:
            if row.split == "test":
                counts.setdefault(row.domain, set()).add(row.n_users)
    per_domain = ", ".join(
        f"{d} {'/'.join(str(n) for n in sorted(ns))}" for d, ns in counts.items()
    )
    how = (
        "every evaluable user (3+ interactions) of each domain"
        if sample is None
        else f"a sample of at most {sample} evaluable users per domain drawn with "
        f"evaluation.users_seed = {settings.get('users_seed', 0)}"
    )
    return f"Users evaluated: {how}, the same users in every seed (test users: {per_domain})."


def _per_seed_lines(runs: Sequence[RunResults]) -> list[str]:
    """Each seed's mean over merged domains, test Recall@10."""
    table = per_seed(runs, "test", "recall@10")
    if table.empty:
        return []
    seeds = list(table.columns)
    lines = ["## Per seed: Recall@10 (test), mean over merged domains", "",
             "| model | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "| :--- | " + " | ".join("---:" for _ in seeds) + " |"]  # fmt: skip
    for model in table.index:
        cells = ["—" if pd.isna(table.loc[model, s]) else f"{table.loc[model, s]:.4f}"
                 for s in seeds]  # fmt: skip
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return lines + [""]


def _gain_lines(runs: Sequence[RunResults]) -> list[str]:
    """Share of the fine-tuning gain each merge keeps (test Recall@10, means over
    merged domains), per seed, then its mean over seeds with the 95% CI."""
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
             "(merge − θ0) ÷ (individual in-domain − θ0), on each seed's means over merged "
             "domains; mean over seeds ± 95% CI.", "", "| merge | mean Recall@10 | gain kept |",
             "| :--- | ---: | ---: |"]  # fmt: skip
    for merge, values in shares.items():
        summary = SeedSummary.of(values)
        if math.isnan(summary.mean):
            kept = "n/a"
        elif math.isnan(summary.half_width):
            kept = f"{100 * summary.mean:.1f} %"
        else:
            kept = f"{100 * summary.mean:.1f} ± {100 * summary.half_width:.1f} %"
        lines.append(f"| `{merge}` | {mean_t.loc[merge, MEAN_MERGED]:.4f} | {kept} |")
    return lines + [""]


def _significance_lines(runs: Sequence[RunResults]) -> list[str]:
    reference = reference_merge(runs)
    if reference is None:
        return []
    lines = [f"## Significance against `{reference}` (test)", "",
             f"`{reference}` is the best training-free merge on validation (mean over seeds). "
             f"Paired t-tests over the {len(runs)} seeds of each seed's difference (per domain, "
             "and on the mean over merged domains), Holm-corrected over every comparison in "
             "this section; each cell: mean difference [95% CI], Holm p; "
             "\\* p_Holm < 0.05, \\*\\* p_Holm < 0.01.", ""]  # fmt: skip
    if len(runs) < 2:
        return lines + ["(one seed: no seed-level test)", ""]
    frame = seed_level_tests(runs, reference, "test", HEADLINE)
    for metric in HEADLINE:
        part = frame[frame["metric"] == metric]
        if part.empty:
            continue
        domains = [d for d in runs[0].domains("merged") if d in set(part["domain"])] + [POOLED_ROW]
        lines += [f"### {metric_display(metric)}", "", "| model | " + " | ".join(domains) + " |",
                  "| :--- | " + " | ".join("---:" for _ in domains) + " |"]  # fmt: skip
        for model in dict.fromkeys(part["model"]):
            cells = []
            for domain in domains:
                hit = part[(part["model"] == model) & (part["domain"] == domain)]
                if hit.empty:
                    cells.append("—")
                    continue
                row = hit.iloc[0]
                p = float(row["p_holm"])
                stars = "" if math.isnan(p) else "\\*\\*" if p < 0.01 else "\\*" if p < 0.05 else ""
                ci = ("" if math.isnan(row["ci_low"])
                      else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")  # fmt: skip
                cells.append(f"{float(row['mean_diff']) + 0.0:+.4f}{stars}{ci} (p={p:.2g})")
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
            summaries = seed_summaries(runs, split, metric)
            for model in mean.index:
                for domain in mean.columns:
                    summary = summaries.get((model, domain))
                    records.append({"model": model, "domain": domain, "split": split,
                                    "metric": metric, "mean": _finite(mean.loc[model, domain]),
                                    "std": _finite(std.loc[model, domain]),
                                    "ci95_low": _finite(summary.ci_low) if summary else None,
                                    "ci95_high": _finite(summary.ci_high) if summary else None,
                                    "seeds": len(runs)})  # fmt: skip
    reference = reference_merge(runs)
    tests = (
        seed_level_tests(runs, reference, "test", HEADLINE)
        if reference is not None and len(runs) > 1
        else pd.DataFrame()
    )
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
                "reference_merge": reference,
                "tables": records,
                "seed_level_tests": [
                    {k: (_finite(v) if isinstance(v, float) else v) for k, v in row.items()}
                    for row in tests.to_dict(orient="records")
                ],
            },
        ),  # fmt: skip
        write_bytes_atomic(folder / SUMMARY_CSV, csv),
    ]


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)
