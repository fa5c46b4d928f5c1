"""Model weights as plain ``name -> numpy array`` mappings, and their checks.

Weights are what crosses the wire between domain nodes and the merge server, so they
are validated on arrival: a reply with a missing, extra, wrongly shaped or non-finite
parameter is rejected with a reason rather than merged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

Weights = dict[str, np.ndarray]
WeightSpec = dict[str, tuple[tuple[int, ...], str]]


class WeightsError(ValueError):
    """Weights that do not fit a model: names, shapes, dtypes or values."""


def get_weights(model: nn.Module) -> Weights:
    """A copy of every parameter as float32 numpy, in ``state_dict`` order."""
    return {
        name: tensor.detach().to("cpu", torch.float32).numpy().copy()
        for name, tensor in model.state_dict().items()
    }


def weight_spec(weights: Mapping[str, np.ndarray]) -> WeightSpec:
    """Names, shapes and dtypes: what a valid set of weights for a model looks like."""
    return {name: (tuple(array.shape), str(array.dtype)) for name, array in weights.items()}


def check_weights(weights: Mapping[str, np.ndarray], expected: WeightSpec) -> None:
    """Raise :class:`WeightsError` naming the first problems found, if any."""
    problems: list[str] = []
    missing = [name for name in expected if name not in weights]
    extra = [name for name in weights if name not in expected]
    if missing:
        problems.append(f"missing parameters: {', '.join(missing[:5])}")
    if extra:
        problems.append(f"unexpected parameters: {', '.join(extra[:5])}")
    for name, (shape, dtype) in expected.items():
        array = weights.get(name)
        if array is None:
            continue
        if tuple(array.shape) != shape:
            problems.append(f"{name}: shape {tuple(array.shape)}, expected {shape}")
        elif str(array.dtype) != dtype:
            problems.append(f"{name}: dtype {array.dtype}, expected {dtype}")
        elif not np.all(np.isfinite(array)):
            problems.append(f"{name}: contains NaN or Inf")
    if problems:
        raise WeightsError("; ".join(problems))


def set_weights(model: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Load weights into ``model`` after checking them against its own parameters."""
    check_weights(weights, weight_spec(get_weights(model)))
    device = next(model.parameters()).device
    state = {
        name: torch.from_numpy(np.ascontiguousarray(weights[name])).to(device) for name in weights
    }
    model.load_state_dict(state, strict=True)


def to_tensors(weights: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy weights -> float32 CPU tensors (for merging)."""
    return {name: torch.from_numpy(np.asarray(a, dtype=np.float32)) for name, a in weights.items()}


def to_numpy(weights: Mapping[str, torch.Tensor]) -> Weights:
    """Tensor weights -> float32 numpy (for the wire)."""
    return {name: t.detach().to("cpu", torch.float32).numpy() for name, t in weights.items()}


def weights_nbytes(weights: Mapping[str, np.ndarray]) -> int:
    """Payload size of a set of weights in bytes."""
    return int(sum(np.asarray(a).nbytes for a in weights.values()))
