"""AdaMerging: merge coefficients learned by minimising the entropy of the merged
model's predictions on unlabelled inputs, here the same server-side pseudo-users as
MergeRec (no teacher).

Yang et al., "AdaMerging: Adaptive Model Merging for Multi-Task Learning", ICLR 2024,
arXiv:2310.02575. Defaults follow the paper's layer-wise variant (λ0 = 0.3) and the
MergeRec release's entropy on cosine logits (T = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeContext, register_method
from silorec.merging.learned.coefficients import Granularity
from silorec.merging.learned.objectives import entropy_loss
from silorec.merging.learned.optimize import LearnedMergeParams, learn_merge
from silorec.merging.task_vectors import Weights


class AdaMergingParams(LearnedMergeParams):
    model_config = ConfigDict(title="adamerging parameters")

    granularity: Granularity = "layer"
    scale: float | None = Field(0.3, alias="lambda", description="Initial λ.")
    lambda_min: float | None = Field(0.0, description="Lower bound of every λ (the paper's clamp).")
    lambda_max: float | None = Field(1.0, description="Upper bound of every λ (the paper's clamp).")
    temperature: float = Field(
        1.0, gt=0.0, description="T of the softmax whose entropy is minimised."
    )


@register_method(
    "adamerging",
    AdaMergingParams,
    summary="AdaMerging: λ learned by entropy minimisation on the pseudo-users.",
    reference="arXiv:2310.02575",
    needs_context=True,
)
def adamerging(
    base: Weights,
    finetuned: Sequence[Weights],
    params: AdaMergingParams,
    *,
    generator: torch.Generator,
    context: MergeContext,
) -> Weights:
    def objective(student: torch.Tensor, _teacher: torch.Tensor) -> torch.Tensor:
        return entropy_loss(student, params.temperature)

    return learn_merge(base, finetuned, params, objective, generator=generator, context=context,
                       needs_teacher=False)  # fmt: skip
