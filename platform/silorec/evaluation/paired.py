"""Paired comparisons of two models over the same users, from sufficient statistics.

A node evaluates every model on the same users, so it can compare two models user by
user. It sends only three numbers per pair and metric (n, Σd, Σd² of the per-user
differences d), never a per-user value; from those the server (and a summary over
seeds or domains, by adding them up) computes a paired t-test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Metrics compared pairwise (the headline ones; every metric would multiply the
#: message size for little use).
PAIRED_METRICS = ("recall@10", "ndcg@10")


@dataclass(frozen=True)
class PairedSums:
    """n, Σd and Σd² of per-user differences d = metric(a) − metric(b)."""

    n: int
    total: float
    total_sq: float

    @classmethod
    def of(cls, a: np.ndarray, b: np.ndarray) -> PairedSums:
        diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        return cls(len(diff), float(diff.sum()), float((diff**2).sum()))

    def __add__(self, other: PairedSums) -> PairedSums:
        """Pooled over more users (other domains, other seeds)."""
        return PairedSums(self.n + other.n, self.total + other.total,
                          self.total_sq + other.total_sq)  # fmt: skip


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired t-test of mean difference 0."""

    n: int
    mean_diff: float
    sd_diff: float
    t: float
    p: float


def paired_t_test(sums: PairedSums) -> PairedTest:
    """The paired t-test from sufficient statistics. Identical models (all d = 0)
    give p = 1; a constant non-zero difference gives p = 0."""
    n = sums.n
    if n < 2:
        return PairedTest(n, sums.total / n if n else 0.0, 0.0, 0.0, 1.0)
    mean = sums.total / n
    variance = max((sums.total_sq - n * mean**2) / (n - 1), 0.0)
    sd = math.sqrt(variance)
    if sd == 0.0:
        return PairedTest(n, mean, 0.0, 0.0 if mean == 0 else math.copysign(math.inf, mean),
                          1.0 if mean == 0 else 0.0)  # fmt: skip
    t = mean / (sd / math.sqrt(n))
    return PairedTest(n, mean, sd, t, float(2 * stats.t.sf(abs(t), df=n - 1)))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN stays NaN and does
    not count as a comparison): controls the chance of any false positive among the
    comparisons reported together."""
    indexed = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    indexed.sort()
    m = len(indexed)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class SeedSummary:
    """Seed-level statistics of values, one per seed: mean, the 95% confidence
    interval of the mean (Student's t, k − 1 degrees of freedom), and the two-sided
    p-value of a zero mean (a one-sample t-test: for differences, a paired test over
    seeds). With one seed the interval and p are NaN."""

    n: int
    mean: float
    ci_low: float
    ci_high: float
    p: float

    @classmethod
    def of(cls, values: Sequence[float]) -> SeedSummary:
        data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
        n = len(data)
        if n == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        mean = float(data.mean())
        if n < 2:
            return cls(n, mean, math.nan, math.nan, math.nan)
        sd = float(data.std(ddof=1))
        half = float(stats.t.ppf(0.975, df=n - 1)) * sd / math.sqrt(n)
        if sd == 0.0:
            p = 1.0 if mean == 0.0 else 0.0
        else:
            p = float(2 * stats.t.sf(abs(mean / (sd / math.sqrt(n))), df=n - 1))
        return cls(n, mean, mean - half, mean + half, p)

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2
