"""Weight averaging: θ = θ0 + (1/K) Σk τk = (1/K) Σk θk.

Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models
improves accuracy without increasing inference time", ICML 2022, arXiv:2203.05482.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pydantic import ConfigDict

from silorec.merging.base import MergeParams, register_method
from silorec.merging.steps import combine_mean
from silorec.merging.task_vectors import Weights, apply, stack_task_vectors


class AverageParams(MergeParams):
    """Plain averaging has no parameters."""

    model_config = ConfigDict(title="average parameters")


@register_method(
    "average",
    AverageParams,
    summary="Plain weight averaging: θ0 + mean of the task vectors.",
    reference="arXiv:2203.05482",
)
def average(
    base: Weights,
    finetuned: Sequence[Weights],
    params: AverageParams,
    *,
    generator: torch.Generator,
) -> Weights:
    tvs, layout = stack_task_vectors(base, finetuned)
    return apply(base, layout.unflatten(combine_mean(tvs)), 1.0)
