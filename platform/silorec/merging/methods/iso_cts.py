"""ISO-CTS: ISO-C's common subspace plus each domain's own top directions outside it,
orthonormalised and given a flat spectrum; θ = θ0 + λ · merged. Other parameters are
averaged.

Marczak et al., "No Task Left Behind: Isotropic Model Merging with Common and
Task-Specific Subspaces", ICML 2025, arXiv:2502.04959. Default common share 0.8, as
in the paper's released configuration.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import isotropic_with_task_subspaces, merge_matrix_wise
from silorec.merging.task_vectors import Weights


class IsoCtsParams(MergeParams):
    model_config = ConfigDict(title="iso_cts parameters")

    scale: float = Field(1.0, alias="lambda", description="λ, the scale of the merged vector.")
    common_fraction: float = Field(
        0.8, ge=0.0, le=1.0,
        description="Share of each matrix's directions taken from the common subspace.",
    )  # fmt: skip


@register_method(
    "iso_cts",
    IsoCtsParams,
    summary="ISO-CTS: per matrix, common + per-domain subspaces with a flat spectrum, θ0 + λ · merged.",
    reference="arXiv:2502.04959",
)
def iso_cts(
    base: Weights, finetuned: Sequence[Weights], params: IsoCtsParams, *, generator: torch.Generator
) -> Weights:
    return merge_matrix_wise(
        base,
        finetuned,
        partial(isotropic_with_task_subspaces, common_fraction=params.common_fraction),
        params.scale,
    )
