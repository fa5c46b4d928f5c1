"""LoRA adapters as a model part of their own: what WeaveRec trains and moves.

An adapter is a plain :data:`~silorec.models.weights.Weights` mapping holding, for
every adapted linear layer ``L`` of a model, ``L.lora_down`` (A, [r, in]) and
``L.lora_up`` (B, [out, r]); the layer's weight becomes W + (α / r)·B·A (Hu et al.,
ICLR 2022, arXiv:2106.09685). The same code adapts both backbones (the text-seq
transformer and adaptor, the Hugging Face MiniLM encoder): it parametrises their
``nn.Linear`` weights in place, so the model's own parameter names never change and
base weights load and travel exactly as without an adapter. (``peft`` renames the
wrapped layers' parameters, ``base_layer.weight``, which would give every backbone a
second wire format; a parametrisation does not.)

Merging adapters is exact on ΔW = (α / r)·B·A (:func:`adapter_delta`,
:func:`fold_adapter`), never on A and B separately: B₁A₁ + B₂A₂ is not
(B₁ + B₂)(A₁ + A₂).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from silorec.models.weights import Weights, WeightSpec, check_weights

DOWN = "lora_down"
UP = "lora_up"


class LowRankDelta(nn.Module):
    """Parametrisation W -> W + (α / r)·B·A; B starts at zero, so training starts
    exactly at W."""

    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.empty(rank, in_features))
        self.up = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.scaling * (self.up @ self.down)


def adapted_layers(model: nn.Module, targets: Sequence[str] = ("*",)) -> dict[str, nn.Linear]:
    """The linear layers an adapter covers, by module name: every ``nn.Linear`` whose
    name matches one of the ``targets`` glob patterns (``"*"``: all of them)."""
    layers = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(fnmatch.fnmatchcase(name, t) for t in targets)
    }
    if not layers:
        raise ValueError(f"no linear layer of the model matches the adapter targets {targets}")
    return layers


def layer_rank(layer: nn.Linear, rank: int) -> int:
    """The rank used on ``layer``: ``rank``, capped by the layer's own sizes."""
    return min(rank, layer.in_features, layer.out_features)


def adapter_spec(model: nn.Module, rank: int, targets: Sequence[str] = ("*",)) -> WeightSpec:
    """Names, shapes and dtypes of a valid adapter for ``model`` (what the server and
    the node's wire policy check an adapter upload against)."""
    spec: WeightSpec = {}
    for name, layer in adapted_layers(model, targets).items():
        r = layer_rank(layer, rank)
        spec[f"{name}.{DOWN}"] = ((r, layer.in_features), "float32")
        spec[f"{name}.{UP}"] = ((layer.out_features, r), "float32")
    return spec


def init_adapter(
    model: nn.Module, rank: int, targets: Sequence[str] = ("*",), *, seed: int
) -> Weights:
    """A fresh adapter: A drawn as LoRA does (Kaiming-uniform), B zero, so the adapted
    model starts exactly as ``model``. The same ``seed`` gives the same adapter."""
    generator = torch.Generator().manual_seed(seed)
    adapter: Weights = {}
    for name, layer in adapted_layers(model, targets).items():
        r = layer_rank(layer, rank)
        down = torch.empty(r, layer.in_features)
        bound = 1.0 / math.sqrt(layer.in_features)  # kaiming_uniform_(a=√5) on [r, in]
        down.uniform_(-bound, bound, generator=generator)
        adapter[f"{name}.{DOWN}"] = down.numpy()
        adapter[f"{name}.{UP}"] = np.zeros((layer.out_features, r), dtype=np.float32)
    return adapter


def adapter_layers(adapter: Mapping[str, np.ndarray]) -> list[str]:
    """The layer names an adapter covers, in its order."""
    return [key.removesuffix(f".{DOWN}") for key in adapter if key.endswith(f".{DOWN}")]


def adapter_delta(adapter: Mapping[str, np.ndarray], alpha: float | None) -> Weights:
    """ΔW = (α / r)·B·A of every adapted layer, keyed by the layer's ``weight``
    parameter name. ``alpha`` None means α = r (scaling 1)."""
    deltas: Weights = {}
    for layer in adapter_layers(adapter):
        down = np.asarray(adapter[f"{layer}.{DOWN}"], dtype=np.float32)
        up = np.asarray(adapter[f"{layer}.{UP}"], dtype=np.float32)
        rank = down.shape[0]
        scaling = (rank if alpha is None else alpha) / rank
        deltas[f"{layer}.weight"] = (scaling * (up @ down)).astype(np.float32)
    return deltas


def fold_adapter(
    base: Mapping[str, np.ndarray], adapter: Mapping[str, np.ndarray], alpha: float | None
) -> Weights:
    """Plain model weights: ``base`` with every adapted layer's ΔW added. The result
    has the base's names and serves with no extra inference cost."""
    deltas = adapter_delta(adapter, alpha)
    missing = [name for name in deltas if name not in base]
    if missing:
        raise ValueError(f"adapter layers that the model does not have: {', '.join(missing[:5])}")
    return {
        name: (np.asarray(w, dtype=np.float32) + deltas[name]) if name in deltas else w
        for name, w in base.items()
    }


@contextmanager
def adapter_attached(
    model: nn.Module,
    adapter: Mapping[str, np.ndarray],
    alpha: float | None,
    targets: Sequence[str] = ("*",),
) -> Iterator[Callable[[], Weights]]:
    """Within the block ``model`` runs as W + (α / r)·B·A with A and B from ``adapter``
    and only they train (everything else is frozen). Yields a function returning the
    adapter's current values; on exit the parametrisations are removed and the model
    is exactly its base again."""
    layers = adapted_layers(model, targets)
    rank = max(int(np.asarray(adapter[f"{name}.{DOWN}"]).shape[0])
               for name in layers if f"{name}.{DOWN}" in adapter) if adapter else 0  # fmt: skip
    check_weights(adapter, adapter_spec(model, max(rank, 1), targets))
    first = next(iter(layers.values()))
    device = first.weight.device
    trainable = {p: p.requires_grad for p in model.parameters()}
    for parameter in trainable:
        parameter.requires_grad_(False)
    deltas: dict[str, LowRankDelta] = {}
    for name, layer in layers.items():
        down = torch.from_numpy(np.array(adapter[f"{name}.{DOWN}"], dtype=np.float32))
        up = torch.from_numpy(np.array(adapter[f"{name}.{UP}"], dtype=np.float32))
        delta = LowRankDelta(layer.out_features, layer.in_features, down.shape[0],
                             float(down.shape[0] if alpha is None else alpha))  # fmt: skip
        with torch.no_grad():
            delta.down.copy_(down)
            delta.up.copy_(up)
        deltas[name] = delta.to(device)
        parametrize.register_parametrization(layer, "weight", deltas[name])

    def current() -> Weights:
        out: Weights = {}
        for name, delta in deltas.items():
            out[f"{name}.{DOWN}"] = delta.down.detach().to("cpu", torch.float32).numpy().copy()
            out[f"{name}.{UP}"] = delta.up.detach().to("cpu", torch.float32).numpy().copy()
        return out

    try:
        yield current
    finally:
        for layer in layers.values():
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        for parameter, was_trainable in trainable.items():
            parameter.requires_grad_(was_trainable)
