"""DARE: drop each task-vector entry with probability p and rescale the rest by
1/(1 − p), then combine as task arithmetic (θ0 + λ Σk τk') or as TIES without the trim
(elect signs, disjoint mean, θ0 + λ · merged).

Yu et al., "Language Models are Super Mario: Absorbing Abilities from Homologous
Models as a Free Lunch", ICML 2024, arXiv:2311.03099.

λ defaults to the default of the method it is combined with: 0.3 for
``combine = "task_arithmetic"`` (as :mod:`.task_arithmetic`) and 1.0 for
``combine = "ties"`` (as :mod:`.ties`), so that DARE with ``drop_rate = 0`` is exactly
that method (TIES at density 1).

The drops draw from the generator the caller passes (the run's seed), or from one
seeded with ``seed`` when that is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import ConfigDict, Field

from silorec.merging.base import MergeParams, register_method
from silorec.merging.methods.task_arithmetic import TaskArithmeticParams
from silorec.merging.methods.ties import TiesParams
from silorec.merging.steps import combine_sum, disjoint_mean, random_drop, sign_consensus
from silorec.merging.task_vectors import Weights, apply, stack_task_vectors

# λ of the method DARE combines with, when the scenario gives none.
DEFAULT_SCALE = {
    "task_arithmetic": TaskArithmeticParams.model_fields["scale"].default,
    "ties": TiesParams.model_fields["scale"].default,
}


class DareParams(MergeParams):
    model_config = ConfigDict(title="dare parameters")

    drop_rate: float = Field(
        0.9, ge=0.0, lt=1.0, description="p, the probability of dropping each entry."
    )
    combine: Literal["task_arithmetic", "ties"] = Field(
        "task_arithmetic", description="How the dropped task vectors are combined."
    )
    scale: float | None = Field(
        None,
        alias="lambda",
        description="λ; default 0.3 with combine='task_arithmetic', 1.0 with 'ties'.",
    )
    seed: int | None = Field(
        None, description="Seed of the drops; default: the generator of the run."
    )

    @property
    def resolved_scale(self) -> float:
        """λ as given, or the default of the ``combine`` method."""
        return DEFAULT_SCALE[self.combine] if self.scale is None else self.scale


@register_method(
    "dare",
    DareParams,
    summary="DARE: drop entries with rate p, rescale by 1/(1-p), combine as TA or TIES.",
    reference="arXiv:2311.03099",
)
def dare(
    base: Weights, finetuned: Sequence[Weights], params: DareParams, *, generator: torch.Generator
) -> Weights:
    if params.seed is not None:
        generator = torch.Generator().manual_seed(params.seed)
    tvs, layout = stack_task_vectors(base, finetuned)
    dropped = random_drop(tvs, params.drop_rate, generator=generator)
    if params.combine == "ties":
        merged = disjoint_mean(dropped, sign_consensus(dropped))
    else:
        merged = combine_sum(dropped)
    return apply(base, layout.unflatten(merged), params.resolved_scale)
