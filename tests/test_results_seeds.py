"""Summaries over seeds: mean ± std per model and domain, paired tests pooled over
seeds, the summary files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from results_example import example_results
from scipy import stats

from silorec.evaluation.paired import PairedSums
from silorec.results import MEAN_MERGED
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


def test_holm_adjusts_in_input_order_and_skips_nan() -> None:
    from silorec.evaluation.paired import holm

    adjusted = holm([0.01, 0.04, float("nan"), 0.03])
    assert adjusted[0] == pytest.approx(0.03)  # 3 comparisons x 0.01
    assert adjusted[3] == pytest.approx(0.06)  # 2 x 0.03
    assert adjusted[1] == pytest.approx(0.06)  # max(1 x 0.04, 0.06): monotone
    assert np.isnan(adjusted[2])


def test_seed_level_tests_are_paired_t_tests_over_seeds_with_holm() -> None:
    """The replicates are the seeds: the test is over the per-seed means, whatever
    the number of users behind them."""
    from silorec.results.seeds import per_seed, seed_level_tests

    runs = seeded_runs([0.0, 0.0, 0.0, 0.0])
    bumps = [0.010, 0.030, 0.020, 0.025]
    for run, bump in zip(runs, bumps, strict=True):
        for row in run.rows:
            if row.model == "task_arithmetic(lambda=0.3)" and row.split == "test":
                row.metrics = {**row.metrics, "recall@10": row.metrics["recall@10"] + bump}
    frame = seed_level_tests(runs, "average", "test", ["recall@10", "ndcg@10"])
    row = frame[(frame["metric"] == "recall@10") & (frame["model"] == "task_arithmetic(lambda=0.3)")
                & (frame["domain"] == "(merged)")].iloc[0]  # fmt: skip
    table = per_seed(runs, "test", "recall@10")
    a = table.loc["task_arithmetic(lambda=0.3)"].to_numpy()
    b = table.loc["average"].to_numpy()
    assert row["seeds"] == 4
    assert row["mean_diff"] == pytest.approx((a - b).mean())
    assert row["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    half = stats.t.ppf(0.975, 3) * (a - b).std(ddof=1) / 2
    assert row["ci_low"] == pytest.approx((a - b).mean() - half)
    finite = frame["p"].dropna()
    assert (frame.loc[finite.index, "p_holm"] >= finite - 1e-12).all()
    assert row["p_holm"] >= row["p"]


def test_the_summary_reports_seed_level_statistics_and_the_users(tmp_path: Path) -> None:
    runs = seeded_runs([0.0, 0.01, 0.02])
    write_summary(runs, tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "95% confidence interval" in text and "2 degrees of freedom" in text
    assert "## Per seed: Recall@10 (test)" in text
    assert "Users evaluated: every evaluable user" in text
    assert "Paired t-tests over the 3 seeds" in text and "Holm" in text
    data = json.loads((tmp_path / "summary.json").read_text())
    assert data["seed_level_tests"] and "p_holm" in data["seed_level_tests"][0]
    assert all("ci95_low" in r for r in data["tables"])
