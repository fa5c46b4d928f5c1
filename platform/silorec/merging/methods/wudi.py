"""WUDI: per weight matrix, the merged task matrix that least disturbs each domain on
the inputs its own task matrix responds to (data-free, solved exactly);
θ = θ0 + λ · merged. Other parameters are averaged.

Cheng et al., "Whoever Started the Interference Should End It: Guiding Data-Free
Model Merging via Task Vectors", ICML 2025, arXiv:2503.08099. The paper runs a few
hundred Adam steps from Σk τk; the objective is quadratic, so here it is solved in
closed form (:func:`~silorec.merging.steps.interference_minimiser`), which is
deterministic and costs one small eigendecomposition per matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import interference_minimiser, merge_matrix_wise
from silorec.merging.task_vectors import Weights


class WudiParams(MergeParams):
    model_config = ConfigDict(title="wudi parameters")

    scale: float = Field(1.0, alias="lambda", description="λ, the scale of the merged vector.")


@register_method(
    "wudi",
    WudiParams,
    summary="WUDI: per matrix, least interference on each domain's own input span, θ0 + λ · merged.",
    reference="arXiv:2503.08099",
)
def wudi(
    base: Weights, finetuned: Sequence[Weights], params: WudiParams, *, generator: torch.Generator
) -> Weights:
    return merge_matrix_wise(base, finetuned, interference_minimiser, params.scale)
