"""TIES-Merging: trim each task vector to its largest entries, elect a sign per
coordinate, average the agreeing entries (disjoint mean), θ = θ0 + λ · merged.

Yadav et al., "TIES-Merging: Resolving Interference When Merging Models",
NeurIPS 2023, arXiv:2306.01708. The defaults follow the MergeRec release's TIES
initialisation: density 0.2, one top-k over all parameters of a task vector
(``scope = "global"``), λ = 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import disjoint_mean, magnitude_trim, sign_consensus
from silorec.merging.task_vectors import Scope, Weights, apply, stack_task_vectors


class TiesParams(MergeParams):
    model_config = ConfigDict(title="ties parameters")

    density: float = Field(
        0.2, gt=0.0, le=1.0, description="Fraction of each task vector kept by the trim."
    )
    scale: float = Field(1.0, alias="lambda", description="λ, the scale of the merged vector.")
    scope: Scope = Field(
        "global",
        description="'global': one magnitude threshold over all parameters of a task "
        "vector (the paper, the MergeRec release); 'tensor': one per parameter tensor.",
    )


@register_method(
    "ties",
    TiesParams,
    summary="TIES: trim to top-density magnitudes, elect signs, disjoint mean, θ0 + λ · merged.",
    reference="arXiv:2306.01708",
)
def ties(
    base: Weights, finetuned: Sequence[Weights], params: TiesParams, *, generator: torch.Generator
) -> Weights:
    tvs, layout = stack_task_vectors(base, finetuned)
    trimmed = magnitude_trim(tvs, params.density, groups=layout.groups(params.scope))
    merged = disjoint_mean(trimmed, sign_consensus(trimmed))
    return apply(base, layout.unflatten(merged), params.scale)
