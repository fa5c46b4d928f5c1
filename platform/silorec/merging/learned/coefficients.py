"""Merge coefficients λ, the only thing a learned merge trains.

θ = θ0 + Σk λk τk. *Task-wise*: one λ per domain. *Layer-wise*: one λ per domain per
layer group, where a group is one transformer block (parameters named ``blocks.N.*``
in text-seq, ``bert.encoder.layer.N.*`` in text-encoder) and everything else (item
adaptor, positions, embeddings, final norm) is one group ``others``: the grouping of
the MergeRec release (``encoder.layer.N`` vs the rest).

The merged weights are materialised from λ at every step as plain tensors, so the
model can be run with ``torch.func.functional_call`` and gradients flow to λ only.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from torch import nn

from silorec.merging.task_vectors import Layout

Granularity = Literal["task", "layer"]
OTHERS = "others"
_BLOCK = re.compile(r"^(?:blocks|bert\.encoder\.layer)\.(\d+)\.")


def layer_group(name: str) -> str:
    """The layer group of a parameter: ``layer N`` for block N's, else ``others``."""
    match = _BLOCK.match(name)
    return f"layer {match.group(1)}" if match else OTHERS


class MergeCoefficients(nn.Module):
    """λ with shape ``[groups, K]`` (one group for task-wise) over stacked task vectors."""

    def __init__(
        self,
        base: torch.Tensor,
        task_vectors: torch.Tensor,
        layout: Layout,
        granularity: Granularity,
        initial: float,
    ) -> None:
        super().__init__()
        self.layout = layout
        self.register_buffer("base", base)
        self.register_buffer("task_vectors", task_vectors)
        names = [layer_group(n) for n in layout.names] if granularity == "layer" else None
        self.groups: list[str] = (
            sorted(set(names), key=lambda g: (g == OTHERS, g)) if names else ["all"]
        )
        index = [self.groups.index(g) for g in names] if names else [0] * len(layout.names)
        self.param_group: list[int] = index
        self.lambdas = nn.Parameter(torch.full((len(self.groups), task_vectors.shape[0]), initial))

    def weights(self) -> dict[str, torch.Tensor]:
        """θ0 + Σk λ[g(p), k] τk[p] for every parameter p, as named tensors."""
        out = {}
        for name, shape, span, group in zip(
            self.layout.names,
            self.layout.shapes,
            self.layout.slices,
            self.param_group,
            strict=True,
        ):
            delta = self.lambdas[group] @ self.task_vectors[:, span]
            out[name] = (self.base[span] + delta).view(shape)
        return out

    def table(self) -> dict[str, list[float]]:
        """λ per group, as plain numbers (group -> one value per domain)."""
        values = self.lambdas.detach().cpu().tolist()
        return dict(zip(self.groups, values, strict=True))
