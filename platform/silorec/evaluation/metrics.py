"""Ranking metrics for leave-one-out evaluation with one target item per user.

Pure math on score tensors: no data access, so the merge server may use it too.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch


def metric_names(ks: Iterable[int]) -> list[str]:
    """Metric keys in a fixed order: ``recall@K`` and ``ndcg@K`` per K, then ``mrr``."""
    names: list[str] = []
    for k in ks:
        names += [f"recall@{k}", f"ndcg@{k}"]
    return names + ["mrr"]


#: WeaveRec's sampled protocol: the target among ``sampled_negatives`` sampled items.
SAMPLED_KS = (1, 3, 5)
SAMPLED_METRICS = (*(f"sampled_ndcg@{k}" for k in SAMPLED_KS), "sampled_mrr")


def sampled_metrics(ranks: np.ndarray) -> dict[str, float]:
    """Mean NDCG@1/3/5 and MRR of 0-based ranks among the sampled candidates."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"sampled_ndcg@{k}": float(np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0).mean())
           for k in SAMPLED_KS}  # fmt: skip
    out["sampled_mrr"] = float((1.0 / (ranks + 1)).mean())
    return out


def target_ranks(
    scores: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based rank of each target among all items, [B].

    Ties count against the target (an item scoring exactly as much as the target is
    ranked ahead of it): a model that gives every item the same score gets the worst
    rank, never a perfect one. NaN scores count as the lowest possible score, so a
    diverged model ranks its targets last. ``excluded`` ([B, n] bool) removes items
    from the ranking (e.g. the user's history); the target itself is never excluded.
    """
    scores = scores.nan_to_num(nan=float("-inf"))
    target_scores = scores.gather(1, targets[:, None])
    ahead = scores >= target_scores
    if excluded is not None:
        keep_target = torch.zeros_like(excluded)
        keep_target.scatter_(1, targets[:, None], True)
        ahead &= ~(excluded & ~keep_target)
    return ahead.sum(dim=1) - 1


def per_user_metrics(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, np.ndarray]:
    """Each metric per user (for means, and for paired tests between models)."""
    ranks = np.asarray(ranks, dtype=np.int64)
    gains = 1.0 / np.log2(ranks + 2.0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, gains, 0.0)
    out["mrr"] = 1.0 / (ranks + 1.0)
    return out


def ranking_metrics(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """Mean Recall@K, NDCG@K (one relevant item: 1/log2(rank+2) if rank < K) and MRR."""
    if len(ranks) == 0:
        raise ValueError("no users to evaluate")
    return {name: float(values.mean()) for name, values in per_user_metrics(ranks, ks).items()}
