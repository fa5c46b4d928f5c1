"""TSV-Merge: per weight matrix, each domain's top singular components, decorrelated
across domains, recombined; θ = θ0 + λ · merged. Other parameters are averaged.

Gargiulo et al., "Task Singular Vectors: Reducing Task Interference in Model
Merging", CVPR 2025, arXiv:2412.00081. Defaults follow the paper: rank 1/K per task,
λ = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import merge_matrix_wise, task_singular_vectors
from silorec.merging.task_vectors import Weights


class TsvParams(MergeParams):
    model_config = ConfigDict(title="tsv parameters")

    scale: float = Field(1.0, alias="lambda", description="λ, the scale of the merged vector.")
    rank_fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Share of each matrix's singular components kept per domain; "
        "default 1/K (the domains fill the space once).",
    )


@register_method(
    "tsv",
    TsvParams,
    summary="TSV-Merge: per matrix, top singular vectors per domain, decorrelated, θ0 + λ · merged.",
    reference="arXiv:2412.00081",
)
def tsv(
    base: Weights, finetuned: Sequence[Weights], params: TsvParams, *, generator: torch.Generator
) -> Weights:
    return merge_matrix_wise(
        base,
        finetuned,
        partial(task_singular_vectors, rank_fraction=params.rank_fraction),
        params.scale,
    )
