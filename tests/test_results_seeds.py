"""Summaries over seeds: mean ± std per model and domain, paired tests pooled over
seeds, the summary files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from silorec.evaluation.paired import PairedSums
from silorec.results import MEAN_MERGED
from silorec.results.example import example_results
from silorec.results.seeds import mean_std, pooled_paired_tests, write_summary


def seeded_runs(shifts: list[float]) -> list:
    """Copies of the example run with every test metric shifted per seed."""
    runs = []
    for seed, shift in enumerate(shifts):
        run = example_results()
        run.seeds = {"scenario": seed}
        run.run_id = f"seed-{seed}"
        for row in run.rows:
            if row.split == "test":
                row.metrics = {k: v + shift for k, v in row.metrics.items()}
        runs.append(run)
    return runs


def test_mean_and_sample_std_over_seeds() -> None:
    runs = seeded_runs([0.0, 0.01, 0.02])
    mean, std = mean_std(runs, "test", "recall@10")
    single = runs[0].table("test", "recall@10")
    assert mean.loc["theta0", "beauty"] == pytest.approx(single.loc["theta0", "beauty"] + 0.01)
    assert std.loc["theta0", "beauty"] == pytest.approx(0.01)
    assert MEAN_MERGED in mean.columns


def test_paired_tests_pool_users_over_seeds_and_domains() -> None:
    rng = np.random.default_rng(0)
    runs = seeded_runs([0.0, 0.0])
    raw = []
    for run in runs:
        run.paired = []
        for domain in run.domains("merged"):
            a, b = rng.binomial(1, 0.3, 200).astype(float), rng.binomial(1, 0.2, 200).astype(float)
            raw.append((a, b))
            s = PairedSums.of(a, b)
            run.paired.append({"domain": domain, "split": "test", "metric": "recall@10",
                               "a": "average", "b": "theta0", "n": s.n, "sum": s.total,
                               "sumsq": s.total_sq})  # fmt: skip
    frame = pooled_paired_tests(runs, "average", "test", "recall@10")
    pooled = frame[(frame["model"] == "theta0") & (frame["domain"] == "(merged)")].iloc[0]
    a = np.concatenate([r[0] for r in raw])
    b = np.concatenate([r[1] for r in raw])
    assert pooled["n"] == len(a)
    # theta0 against the reference `average`: the difference is theta0 − average.
    assert pooled["mean_diff"] == pytest.approx((b - a).mean())
    assert pooled["p"] == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-9)


def test_summary_files(tmp_path: Path) -> None:
    runs = seeded_runs([0.0, 0.02])
    paths = write_summary(runs, tmp_path)
    assert [p.name for p in paths] == ["summary.md", "summary.json", "summary.csv"]
    text = (tmp_path / "summary.md").read_text()
    assert "2 seeds ([0, 1])" in text and " ± " in text
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["seeds"] == [0, 1] and data["tables"]
    assert (tmp_path / "summary.csv").read_text().count("\n") == 1 + sum(len(r.rows) for r in runs)
    with pytest.raises(ValueError, match="no runs"):
        write_summary([], tmp_path)
