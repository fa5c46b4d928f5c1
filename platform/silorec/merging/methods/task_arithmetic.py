"""Task arithmetic: θ = θ0 + λ Σk τk.

Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023, arXiv:2212.04089.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import combine_sum
from silorec.merging.task_vectors import Weights, apply, stack_task_vectors


class TaskArithmeticParams(MergeParams):
    model_config = ConfigDict(title="task_arithmetic parameters")

    scale: float = Field(
        0.3, alias="lambda", description="λ, the scale of the summed task vectors."
    )


@register_method(
    "task_arithmetic",
    TaskArithmeticParams,
    summary="Task arithmetic: θ0 + λ · sum of the task vectors.",
    reference="arXiv:2212.04089",
)
def task_arithmetic(
    base: Weights,
    finetuned: Sequence[Weights],
    params: TaskArithmeticParams,
    *,
    generator: torch.Generator,
) -> Weights:
    tvs, layout = stack_task_vectors(base, finetuned)
    return apply(base, layout.unflatten(combine_sum(tvs)), params.scale)
