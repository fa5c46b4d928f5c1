"""Local fine-tuning regimes that keep a domain model close to θ0, so that task
vectors stay small and interfere less when merged.

- ``lora``: only rank-r deltas of every linear layer's weight train (W + B·A, with B
  starting at zero), everything else stays at θ0; the deltas are folded into plain
  weights afterwards, so what a node uploads has the usual parameter names and the
  task vector of every linear layer has rank at most r.
- ``proximal``: all parameters train, with μ/2 · ‖θ − θ0‖² added to the loss
  (as FedProx, Li et al., MLSys 2020, arXiv:1812.06127).
- ``full``: plain fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from silorec.models.lora import LowRankDelta


@contextmanager
def low_rank_training(model: nn.Module, rank: int, alpha: float | None = None) -> Iterator[None]:
    """Within the block, only low-rank deltas of ``model``'s linear weights train; on
    exit they are folded into the weights (parameter names as before).

    Everything else (biases, norms, positions) is frozen at its starting value.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    frozen = {p: p.requires_grad for p in model.parameters()}
    for parameter in frozen:
        parameter.requires_grad_(False)
    for linear in linears:
        rank_here = min(rank, linear.in_features, linear.out_features)
        delta = LowRankDelta(linear.out_features, linear.in_features, rank_here,
                             float(alpha if alpha is not None else rank_here))  # fmt: skip
        parametrize.register_parametrization(linear, "weight", delta.to(linear.weight.device))
    try:
        yield
    finally:
        for linear in linears:
            parametrize.remove_parametrizations(linear, "weight", leave_parametrized=True)
        for parameter, trainable in frozen.items():
            parameter.requires_grad_(trainable)
        for linear in linears:
            linear.weight.requires_grad_(True)


def proximal_penalty(model: nn.Module, anchor: dict[str, torch.Tensor], mu: float) -> torch.Tensor:
    """μ/2 · Σ ‖θ − θ0‖² over the model's parameters (``anchor`` = θ0 by name)."""
    total = sum(
        ((parameter - anchor[name]) ** 2).sum() for name, parameter in model.named_parameters()
    )
    return 0.5 * mu * total


@contextmanager
def training_regime(
    model: nn.Module, regime: str, *, lora_rank: int, proximal_mu: float
) -> Iterator[Callable[[], torch.Tensor] | None]:
    """Set ``model`` up for the regime for the duration of the block; yields the extra
    loss term to add at every step (None if the regime has none)."""
    if regime == "lora":
        with low_rank_training(model, lora_rank):
            yield None
    elif regime == "proximal":
        anchor = {name: p.detach().clone() for name, p in model.named_parameters()}
        yield lambda: proximal_penalty(model, anchor, proximal_mu)
    elif regime == "full":
        yield None
    else:  # guarded by the scenario schema
        raise ValueError(f"unknown training regime '{regime}'")
