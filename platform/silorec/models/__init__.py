"""Sequential recommenders whose parameters are domain-agnostic, and their weights."""

from __future__ import annotations

import torch
from torch import nn

from silorec.models.text_seq import PAD, TextSeqRec
from silorec.models.weights import (
    Weights,
    WeightsError,
    WeightSpec,
    check_weights,
    get_weights,
    set_weights,
    to_numpy,
    to_tensors,
    weight_spec,
    weights_nbytes,
)
from silorec.scenario.schema import ModelSettings

#: Model kinds selectable by ``[model] kind`` in a scenario.
MODEL_KINDS: dict[str, type[nn.Module]] = {"text-seq": TextSeqRec}


def build_model(settings: ModelSettings, text_dim: int, seed: int) -> TextSeqRec:
    """A freshly initialised model: the same ``seed`` gives the same weights on any
    machine, without disturbing the caller's global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODEL_KINDS[settings.kind](settings, text_dim)


def model_weight_spec(settings: ModelSettings, text_dim: int) -> WeightSpec:
    """What valid weights for this model configuration look like."""
    return weight_spec(get_weights(build_model(settings, text_dim, seed=0)))


__all__ = [
    "MODEL_KINDS",
    "PAD",
    "TextSeqRec",
    "WeightSpec",
    "Weights",
    "WeightsError",
    "build_model",
    "check_weights",
    "get_weights",
    "model_weight_spec",
    "set_weights",
    "to_numpy",
    "to_tensors",
    "weight_spec",
    "weights_nbytes",
]
