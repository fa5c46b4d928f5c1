"""MergeRec: merge coefficients learned on item-as-sequence pseudo-users with a
recommendation loss plus distillation from each domain's own model.

Kim et al., "MergeRec", KDD 2026, arXiv:2601.01753. Defaults are the authors'
released configuration: task-wise λ from task arithmetic (λ0 = 0.2), T = 0.05,
α = 1000 (α·T² = 2.5), Adam lr 1e-3, 500 steps, batch 16. Their layer-wise variant
starts from TIES (density 0.2, global top-k) with λ0 = 1.0: ``granularity = "layer"``,
``init = "ties"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeContext, register_method
from silorec.merging.learned.objectives import mergerec_loss
from silorec.merging.learned.optimize import LearnedMergeParams, learn_merge
from silorec.merging.task_vectors import Weights


class MergeRecParams(LearnedMergeParams):
    model_config = ConfigDict(title="mergerec parameters")

    temperature: float = Field(0.05, gt=0.0, description="T of the distillation term.")
    kd_weight: float = Field(1000.0, ge=0.0, description="α; the KD term is α·T²·KL.")


@register_method(
    "mergerec",
    MergeRecParams,
    summary="MergeRec: λ learned on pseudo-users with CE on the teacher's argmax + KD.",
    reference="arXiv:2601.01753",
    needs_context=True,
)
def mergerec(
    base: Weights,
    finetuned: Sequence[Weights],
    params: MergeRecParams,
    *,
    generator: torch.Generator,
    context: MergeContext,
) -> Weights:
    objective = partial(mergerec_loss, temperature=params.temperature, kd_weight=params.kd_weight)
    return learn_merge(base, finetuned, params, objective, generator=generator, context=context)
