"""Ranking metrics, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from silorec.evaluation import metric_names, per_user_metrics, ranking_metrics, target_ranks

SCORES = torch.tensor([[0.1, 0.9, 0.5, 0.5]])


def ranks_of(
    scores: list[list[float]], targets: list[int], excluded: list[list[bool]] | None = None
) -> list[int]:
    mask = None if excluded is None else torch.tensor(excluded, dtype=torch.bool)
    return target_ranks(torch.tensor(scores), torch.tensor(targets), mask).tolist()


# -- target_ranks ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "rank"),
    [
        (1, 0),  # the best item
        (2, 2),  # item 1 is ahead, item 3 ties and counts against the target
        (3, 2),  # symmetric tie
        (0, 3),  # the worst item
    ],
)
def test_rank_is_zero_based_and_ties_count_against_the_target(target: int, rank: int) -> None:
    assert target_ranks(SCORES, torch.tensor([target])).tolist() == [rank]


def test_constant_scores_give_the_worst_rank() -> None:
    assert ranks_of([[0.3] * 6, [0.0] * 6], [0, 5]) == [5, 5]


def test_each_row_is_ranked_on_its_own() -> None:
    scores = [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]]
    assert ranks_of(scores, [0, 0, 0]) == [0, 2, 1]
    ranks = target_ranks(torch.tensor(scores), torch.tensor([0, 0, 0]))
    assert ranks.shape == (3,) and not ranks.dtype.is_floating_point


def test_excluded_items_no_longer_count_ahead() -> None:
    scores = [[0.1, 0.9, 0.5, 0.5]]
    assert ranks_of(scores, [2], [[False, True, False, False]]) == [1]
    assert ranks_of(scores, [2], [[False, True, False, True]]) == [0]
    # excluding items behind the target changes nothing
    assert ranks_of(scores, [2], [[True, False, False, False]]) == [2]
    assert ranks_of(scores, [2], [[False, False, False, False]]) == [2]


def test_the_target_itself_is_never_excluded() -> None:
    scores = [[0.1, 0.9, 0.5, 0.5], [0.1, 0.9, 0.5, 0.5]]
    # row 0: everything excluded, target included -> only the target remains
    # row 1: the target (item 0, worst score) is excluded along with item 1
    excluded = [[True, True, True, True], [True, True, False, False]]
    assert ranks_of(scores, [2, 0], excluded) == [0, 2]


def test_excluded_mask_is_not_modified() -> None:
    excluded = torch.tensor([[False, True, True, False]])
    target_ranks(SCORES, torch.tensor([2]), excluded)
    assert excluded.tolist() == [[False, True, True, False]]


def test_nan_scores_count_as_the_lowest_score() -> None:
    nan = float("nan")
    # a NaN target ranks last (a diverged model must never look perfect)
    assert ranks_of([[nan] * 4, [nan, 0.1, nan, 0.2]], [0, 0]) == [3, 3]
    # a NaN elsewhere is behind every real score
    assert ranks_of([[0.1, nan, 0.3, 0.2]], [0]) == [2]
    assert ranks_of([[0.1, nan, 0.3, 0.2]], [2]) == [0]
    scores = torch.tensor([[nan, 0.5]])
    target_ranks(scores, torch.tensor([1]))
    assert torch.isnan(scores[0, 0])  # the caller's scores are left alone


# -- per_user_metrics / ranking_metrics ---------------------------------------------

RANKS = np.array([0, 1, 4, 9, 10])


def test_per_user_metrics_by_hand() -> None:
    values = per_user_metrics(RANKS, [1, 5, 10])
    assert list(values) == metric_names([1, 5, 10])
    np.testing.assert_array_equal(values["recall@1"], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(values["recall@5"], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(values["recall@10"], [1, 1, 1, 1, 0])
    np.testing.assert_allclose(values["ndcg@1"], [1, 0, 0, 0, 0])
    np.testing.assert_allclose(values["ndcg@5"], [1, 1 / math.log2(3), 1 / math.log2(6), 0, 0])
    np.testing.assert_allclose(
        values["ndcg@10"], [1, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0]
    )
    np.testing.assert_allclose(values["mrr"], [1, 1 / 2, 1 / 5, 1 / 10, 1 / 11])


def test_rank_k_minus_one_is_a_hit_and_rank_k_is_not() -> None:
    values = per_user_metrics(np.array([9, 10]), [10])
    np.testing.assert_array_equal(values["recall@10"], [1.0, 0.0])
    np.testing.assert_allclose(values["ndcg@10"], [1 / math.log2(11), 0.0])


def test_ranking_metrics_are_the_means() -> None:
    metrics = ranking_metrics(RANKS, [5, 10])
    assert list(metrics) == ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "mrr"]
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["recall@5"] == pytest.approx(3 / 5)
    assert metrics["recall@10"] == pytest.approx(4 / 5)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 11) / 5)


def test_perfect_and_hopeless_rankings() -> None:
    assert ranking_metrics(np.zeros(4, dtype=int), [5]) == {
        "recall@5": 1.0,
        "ndcg@5": 1.0,
        "mrr": 1.0,
    }
    worst = ranking_metrics(np.full(3, 99), [5, 10])
    assert worst["recall@10"] == worst["ndcg@10"] == 0.0
    assert worst["mrr"] == pytest.approx(1 / 100)


def test_from_scores_to_metrics() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.5], [0.4, 0.3, 0.2, 0.1]])
    ranks = target_ranks(scores, torch.tensor([2, 0])).numpy()  # [2, 0]
    metrics = ranking_metrics(ranks, [1, 2, 3])
    assert metrics["recall@1"] == 0.5 and metrics["recall@2"] == 0.5
    assert metrics["recall@3"] == 1.0
    assert metrics["ndcg@3"] == pytest.approx((1 / math.log2(4) + 1) / 2)
    assert metrics["mrr"] == pytest.approx((1 / 3 + 1) / 2)


def test_no_ranks_is_an_error() -> None:
    with pytest.raises(ValueError, match="no users to evaluate"):
        ranking_metrics(np.array([], dtype=np.int64), [10])


def test_metric_names_order() -> None:
    assert metric_names([5, 10]) == ["recall@5", "ndcg@5", "recall@10", "ndcg@10", "mrr"]
    assert metric_names([]) == ["mrr"]
