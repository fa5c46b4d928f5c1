"""ISO-C: per weight matrix, the summed task matrix with a flat spectrum (every
singular value set to their mean); θ = θ0 + λ · merged. Other parameters are averaged.

Marczak et al., "No Task Left Behind: Isotropic Model Merging with Common and
Task-Specific Subspaces", ICML 2025, arXiv:2502.04959. The paper tunes λ on
validation (1.3-1.5 on ViT); here the scenario's grid does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import isotropic, merge_matrix_wise
from silorec.merging.task_vectors import Weights


class IsoCParams(MergeParams):
    model_config = ConfigDict(title="iso_c parameters")

    scale: float = Field(1.0, alias="lambda", description="λ, the scale of the merged vector.")


@register_method(
    "iso_c",
    IsoCParams,
    summary="ISO-C: per matrix, the summed task matrix with a flat spectrum, θ0 + λ · merged.",
    reference="arXiv:2502.04959",
)
def iso_c(
    base: Weights, finetuned: Sequence[Weights], params: IsoCParams, *, generator: torch.Generator
) -> Weights:
    return merge_matrix_wise(base, finetuned, isotropic, params.scale)
