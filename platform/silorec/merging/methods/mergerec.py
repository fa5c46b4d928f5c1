"""MergeRec: merge coefficients learned on item-as-sequence pseudo-users with a
recommendation loss plus distillation from each domain's own model.

Kim et al., "MergeRec", KDD 2026, arXiv:2601.01753. Defaults follow the
authors' released configuration: task-wise λ from task arithmetic (λ0 = 0.2),
T = 0.05, α = 1000 (α·T² = 2.5), Adam lr 1e-3, 500 steps, batch 16. Their layer-wise
variant starts from TIES (density 0.2, global top-k) with λ0 = 1.0:
``granularity = "layer"``, ``init = "ties"``. silorec's own defaults differ in two
places: the teacher row is the domain model's score of the one-item *sequence*, and
the best λ on a check set is returned (never worse than the start).
``preset = "release"`` undoes both and pins the rest, to reproduce the release
exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, model_validator

from silorec.merging.base import MergeContext, register_method
from silorec.merging.learned.objectives import mergerec_loss
from silorec.merging.learned.optimize import LearnedMergeParams, learn_merge
from silorec.merging.task_vectors import Weights

#: The authors' released configuration (../shared/notes/mergerec-release.md): teacher
#: rows from the item representations, dropout on, items fixed, every item a
#: pseudo-user, λ where Adam ends and every parameter scaled by it.
RELEASE: dict[str, Any] = {
    "teacher": "item",
    "student_dropout": True,
    "reencode_items": False,
    "pseudo_users": "all",
    "temperature": 0.05,
    "kd_weight": 1000.0,
    "steps": 500,
    "batch_size": 16,
    "lr": 1e-3,
    "keep_best": False,
    "hold_unreached": False,
}


class MergeRecParams(LearnedMergeParams):
    model_config = ConfigDict(title="mergerec parameters")

    preset: Literal["release"] | None = Field(
        None,
        description="'release': the authors' released configuration exactly (teacher "
        "'item', 500 steps, batch 16, T 0.05, α 1000, dropout on, final λ); a key it "
        "fixes may not be set to another value.",
    )
    temperature: float = Field(0.05, gt=0.0, description="T of the distillation term.")
    kd_weight: float = Field(1000.0, ge=0.0, description="α; the KD term is α·T²·KL.")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") != "release":
            return data
        out = dict(data)
        for key, value in RELEASE.items():
            if key in out and out[key] != value:
                raise ValueError(
                    f"preset 'release' fixes {key} = {value!r}; remove {key} = {out[key]!r} "
                    "or drop the preset"
                )
            out[key] = value
        return out


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
