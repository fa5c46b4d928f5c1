"""Measured privacy: a loss-based membership-inference attack and its AUC.

The attack (Yeom et al., "Privacy risk in machine learning", CSF 2018) guesses that a
user was in the training data when the released model's loss on that user's training
sequence is low. Its strength over every threshold is the ROC AUC of "member" against
"non-member": 0.5 is a coin toss (the model says nothing about membership), 1.0 picks
members out perfectly. Non-members are a seeded share of the domain's users kept out
of training altogether, so the two groups come from the same distribution and differ
only in having been trained on.

Everything here works on arrays of scores: which model and which users is the node's
business, and per-user scores never leave it (only the AUC does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


def membership_split(
    candidates: np.ndarray, non_member_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(members, non_members)``, both sorted: a seeded ``non_member_fraction`` of
    ``candidates`` (at least one, and at least one left) held out of training."""
    if len(candidates) < 2:
        raise ValueError(
            f"membership inference needs at least 2 users with training data, got {len(candidates)}"
        )
    n_out = min(max(1, round(non_member_fraction * len(candidates))), len(candidates) - 1)
    rng = np.random.default_rng(seed)
    non_members = np.sort(rng.choice(candidates, size=n_out, replace=False))
    return np.setdiff1d(candidates, non_members), non_members


def roc_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting
    one half: the Mann-Whitney U statistic over the product of the group sizes."""
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs at least one score in each group")
    ranks = rankdata(np.concatenate([positive_scores, negative_scores]))
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


@dataclass(frozen=True)
class MembershipAudit:
    """The attack's result: scalars only."""

    auc: float
    n_members: int
    n_non_members: int


def loss_attack(member_losses: np.ndarray, non_member_losses: np.ndarray) -> MembershipAudit:
    """The loss-threshold attack's AUC (a lower loss says "member")."""
    return MembershipAudit(
        auc=roc_auc(-np.asarray(member_losses), -np.asarray(non_member_losses)),
        n_members=len(member_losses),
        n_non_members=len(non_member_losses),
    )
