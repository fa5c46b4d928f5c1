"""Consensus: decide, per coordinate, which task vectors may contribute.

Functions take task vectors stacked as rows of a ``[K, N]`` tensor.
"""

from __future__ import annotations

import torch


def elect_sign(task_vectors: torch.Tensor) -> torch.Tensor:
    """TIES "elect": the sign of the summed values per coordinate (``[N]``, in
    {−1, 0, +1}), i.e. the direction with the larger total mass, not the larger count.

    Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
    NeurIPS 2023, arXiv:2306.01708.

    A coordinate whose values sum to exactly 0 (all zero, or an exact cancellation)
    elects 0: no direction wins, so :func:`agreement_mask` lets no task through and the
    merge keeps θ0 there. This keeps the merge odd under a sign flip of every task
    vector. (The MergeRec release and mergekit break the 0 case towards +1; with real
    float weights an exact cancellation of non-zero values practically never happens.)
    """
    return torch.sign(task_vectors.sum(dim=0))


def agreement_mask(task_vectors: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Boolean ``[K, N]``: entries that are non-zero and have the elected ``sign``."""
    return task_vectors * sign > 0  # same sign, both non-zero


def sign_consensus(task_vectors: torch.Tensor) -> torch.Tensor:
    """Per-task agreement masks with the TIES-elected sign (:func:`elect_sign`)."""
    return agreement_mask(task_vectors, elect_sign(task_vectors))
