"""Combine task vectors into one merged task vector.

Functions take task vectors stacked as rows of a ``[K, N]`` tensor and return ``[N]``.
The scale λ is applied afterwards, by :func:`silorec.merging.task_vectors.apply`.
"""

from __future__ import annotations

import torch


def combine_sum(task_vectors: torch.Tensor) -> torch.Tensor:
    """Σk τk: task arithmetic (Ilharco et al., "Editing Models with Task Arithmetic",
    ICLR 2023, arXiv:2212.04089)."""
    return task_vectors.sum(dim=0)


def combine_mean(task_vectors: torch.Tensor) -> torch.Tensor:
    """(1/K) Σk τk: θ0 plus this is the plain average of the models ("model soup",
    Wortsman et al., ICML 2022, arXiv:2203.05482)."""
    return task_vectors.mean(dim=0)


def disjoint_contributions(task_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each task's share of the TIES disjoint mean, ``[K, N]``: its selected non-zero
    entries divided by how many tasks are selected there (0 elsewhere). Summed over
    tasks this is :func:`disjoint_mean`; kept per task it is the TIES initialisation
    of learned merges (MergeRec scales each task's share by its own λ).
    """
    selected = mask & (task_vectors != 0)
    count = selected.sum(dim=0, dtype=task_vectors.dtype).clamp(min=1)
    return torch.where(selected, task_vectors, 0.0) / count


def disjoint_mean(task_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """TIES "disjoint merge": per coordinate, the mean over the tasks whose entry is
    selected by ``mask`` (usually :func:`~silorec.merging.steps.sign_consensus`) and
    non-zero; 0 where there is none.

    Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
    NeurIPS 2023, arXiv:2306.01708.
    """
    return disjoint_contributions(task_vectors, mask).sum(dim=0)
