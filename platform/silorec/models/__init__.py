"""Sequential recommenders whose parameters are domain-agnostic, and their weights.

Every model kind offers one interface, so that training, the evaluation protocol and
learned merges work for all of them without forking:

- *item inputs* (:data:`ItemInputs`): what the model encodes a catalogue from, built
  by :func:`catalogue_inputs` from the catalogue's texts and frozen text embeddings;
- ``encode_items(item_inputs) -> [n, d]`` unit vectors;
- ``encode_histories(item_inputs, item_repr, histories) -> [B, d]`` unit vectors, one
  per history (``histories``: [B, L] item indices left-padded with :data:`PAD`, the
  last column the most recent item; ``item_repr``: ``encode_items(item_inputs)``);
- ``scores(states, item_repr) -> [B, n]``: cosine similarity over the temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from silorec.models.item_tokens import ItemTokens, tokenize_items
from silorec.models.lora import adapter_spec
from silorec.models.text_encoder import TextEncoderRec
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

#: A model of any kind (the interface above).
Recommender = TextSeqRec | TextEncoderRec
#: What a model encodes items from: frozen text embeddings [n, text_dim] (text-seq)
#: or the tokenised item texts (text-encoder).
ItemInputs = torch.Tensor | ItemTokens

#: Model kinds selectable by ``[model] kind`` in a scenario.
MODEL_KINDS: dict[str, type[Recommender]] = {
    "text-seq": TextSeqRec,
    "text-encoder": TextEncoderRec,
}


def build_model(settings: ModelSettings, text_dim: int, seed: int) -> Recommender:
    """A freshly initialised model: the same ``seed`` gives the same weights on any
    machine, without disturbing the caller's global random state (a text-encoder
    starts from the pretrained encoder whatever the seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODEL_KINDS[settings.kind](settings, text_dim)


def model_weight_spec(settings: ModelSettings, text_dim: int) -> WeightSpec:
    """What valid weights for this model configuration look like."""
    return weight_spec(get_weights(build_model(settings, text_dim, seed=0)))


def model_adapter_spec(
    settings: ModelSettings, text_dim: int, rank: int, layers: Sequence[str]
) -> WeightSpec:
    """What a valid LoRA adapter of ``rank`` on ``layers`` of this model looks like
    (see :mod:`silorec.models.lora`)."""
    return adapter_spec(build_model(settings, text_dim, seed=0), rank, layers)


def catalogue_inputs(
    settings: ModelSettings, text_embeddings: np.ndarray, texts: Sequence[str] | None
) -> ItemInputs:
    """The item inputs of a catalogue for a model of ``settings.kind`` (CPU tensors):
    its frozen text embeddings (text-seq) or its tokenised item texts (text-encoder).
    A node builds them from its catalogue, the merge server from what nodes upload."""
    if settings.kind == "text-seq":
        return torch.from_numpy(np.ascontiguousarray(text_embeddings, dtype=np.float32))
    if texts is None:
        raise ValueError("a 'text-encoder' model encodes item texts, and none were given")
    if len(texts) != len(text_embeddings):
        raise ValueError(
            f"{len(texts)} item texts for {len(text_embeddings)} item embeddings: "
            "they must describe the same catalogue"
        )
    return tokenize_items(texts, settings.max_item_tokens)


__all__ = [
    "MODEL_KINDS",
    "PAD",
    "ItemInputs",
    "ItemTokens",
    "Recommender",
    "TextEncoderRec",
    "TextSeqRec",
    "WeightSpec",
    "Weights",
    "WeightsError",
    "build_model",
    "catalogue_inputs",
    "check_weights",
    "get_weights",
    "model_adapter_spec",
    "model_weight_spec",
    "set_weights",
    "to_numpy",
    "to_tensors",
    "weight_spec",
    "weights_nbytes",
]
