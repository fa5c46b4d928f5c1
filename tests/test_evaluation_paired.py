"""Paired t-tests from sufficient statistics agree with scipy on the raw data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from silorec.evaluation.paired import PairedSums, paired_t_test


def test_matches_scipy_on_the_raw_differences() -> None:
    rng = np.random.default_rng(0)
    a = rng.binomial(1, 0.3, size=400).astype(float)
    b = rng.binomial(1, 0.25, size=400).astype(float)
    test = paired_t_test(PairedSums.of(a, b))
    expected = stats.ttest_rel(a, b)
    assert test.t == pytest.approx(expected.statistic, rel=1e-9)
    assert test.p == pytest.approx(expected.pvalue, rel=1e-9)
    assert test.mean_diff == pytest.approx((a - b).mean())


def test_pooling_equals_testing_the_concatenation() -> None:
    rng = np.random.default_rng(1)
    parts = [(rng.random(50), rng.random(50)) for _ in range(3)]
    pooled = sum((PairedSums.of(a, b) for a, b in parts[1:]), PairedSums.of(*parts[0]))
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    assert paired_t_test(pooled).p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)


def test_degenerate_cases() -> None:
    same = np.array([1.0, 0.0, 1.0])
    assert paired_t_test(PairedSums.of(same, same)).p == 1.0
    shifted = paired_t_test(PairedSums.of(same + 0.5, same))
    assert shifted.p == 0.0 and shifted.mean_diff == pytest.approx(0.5)
    assert paired_t_test(PairedSums(1, 0.3, 0.09)).p == 1.0
