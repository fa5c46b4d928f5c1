"""Sparsify task vectors: keep only part of each task vector's entries.

All functions take task vectors stacked as rows of a ``[K, N]`` tensor (a 1-D tensor is
one task vector) and return a new tensor of the same shape; each row is treated on its
own. Values are assumed finite (:func:`silorec.merging.task_vectors.check_compatible`
checks that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:  # also False for NaN
        raise ValueError(f"density must be in (0, 1], got {density}")


def kept_count(n: int, density: float) -> int:
    """How many of ``n`` entries a magnitude trim with ``density`` keeps.

    ``density · n`` rounded half up (so 0.29 · 100 keeps 29 despite floating point),
    but at least one entry when ``n > 0``: a positive density never erases a whole
    group. ``density`` must lie in (0, 1]; a density of 0 would erase every task
    vector (the merge would be θ0 itself, which every result table already shows), so
    it is rejected rather than silently returning the base model.
    """
    _check_density(density)
    if n <= 0:
        return 0
    return min(n, max(1, math.floor(density * n + 0.5)))


def _top_k_rows(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of each row of ``magnitude`` ``[K, n]``.

    Exactly ``k`` per row; among entries equal to the k-th largest value, the ones
    with the lowest index win, so the mask is deterministic whatever the sort does.
    """
    n = magnitude.shape[1]
    if k >= n:
        return torch.ones_like(magnitude, dtype=torch.bool)
    if k <= 0:
        return torch.zeros_like(magnitude, dtype=torch.bool)
    # the k-th largest value of each row, selected from the smaller side (faster)
    if k <= n // 2:
        top = magnitude.topk(k, dim=1, sorted=False).values
        threshold = top.amin(dim=1, keepdim=True)
    else:
        bottom = magnitude.topk(n - k + 1, dim=1, largest=False, sorted=False).values
        threshold = bottom.amax(dim=1, keepdim=True)
    mask = magnitude >= threshold
    surplus = (
        mask.sum(dim=1, dtype=torch.int32) - k
    )  # entries tied with the k-th largest beyond the k
    for row in torch.nonzero(surplus > 0).flatten().tolist():
        tied = torch.nonzero(magnitude[row] == threshold[row]).flatten()
        mask[row, tied[len(tied) - int(surplus[row]) :]] = False
    return mask


def magnitude_mask(
    task_vectors: torch.Tensor, density: float, *, groups: Sequence[slice] | None = None
) -> torch.Tensor:
    """Which entries a magnitude trim keeps: in each row, the :func:`kept_count` entries
    of largest ``|value|``, either over the whole row (``groups=None``: one threshold
    per task vector, "global" scope) or within each group of columns (one threshold per
    parameter tensor, "tensor" scope; see :meth:`Layout.groups`).
    Ties at the threshold go to the lowest index, so the count is exact.
    """
    tvs = task_vectors if task_vectors.dim() == 2 else task_vectors.reshape(1, -1)
    _check_density(density)
    if density == 1.0:
        mask = torch.ones_like(tvs, dtype=torch.bool)
    else:
        magnitude = tvs.abs()
        if groups is None:
            mask = _top_k_rows(magnitude, kept_count(magnitude.shape[1], density))
        else:
            mask = torch.zeros_like(tvs, dtype=torch.bool)
            for group in groups:
                part = magnitude[:, group]
                mask[:, group] = _top_k_rows(part, kept_count(part.shape[1], density))
    return mask.reshape(task_vectors.shape)


def magnitude_trim(
    task_vectors: torch.Tensor, density: float, *, groups: Sequence[slice] | None = None
) -> torch.Tensor:
    """TIES "trim": keep the top ``density`` fraction of each task vector by magnitude
    and set the rest to zero (:func:`magnitude_mask` says which).

    Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
    NeurIPS 2023, arXiv:2306.01708. The paper trims each task vector as a whole; the
    MergeRec release does the same (one top-k over all parameters), which is
    ``groups=None``; mergekit trims per tensor.
    """
    mask = magnitude_mask(task_vectors, density, groups=groups)
    return torch.where(mask, task_vectors, 0.0)


def random_drop(
    task_vectors: torch.Tensor, drop_rate: float, *, generator: torch.Generator
) -> torch.Tensor:
    """DARE "drop and rescale": zero each entry independently with probability
    ``drop_rate`` and divide the kept ones by ``1 − drop_rate``, so the expected
    task vector is unchanged.

    Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous
    Models as a Free Lunch", ICML 2024, arXiv:2311.03099.

    The draws come from ``generator`` (one uniform number per entry, row-major over
    the ``[K, N]`` stack; entry kept when its number is ``>= drop_rate``), so the same
    generator state gives the same result. ``drop_rate`` must lie in [0, 1); 0 returns
    a copy and draws nothing.
    """
    if not 0.0 <= drop_rate < 1.0:  # also False for NaN
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    if drop_rate == 0.0:
        return task_vectors.clone()
    draws = torch.rand(
        task_vectors.shape, generator=generator, device=generator.device, dtype=torch.float32
    ).to(task_vectors.device)
    keep = draws >= drop_rate
    return torch.where(keep, task_vectors / (1.0 - drop_rate), 0.0)
