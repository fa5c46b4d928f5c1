"""The paper's backbone family: the text encoder itself, fine-tuned end to end.

As BLaIR in MergeRec (Kim et al., KDD 2026): items and histories are both text,
encoded by the same pretrained sentence encoder, all-MiniLM-L6-v2, with its own
pooling (the mean of the last hidden states over real tokens, then L2
normalisation, exactly what sentence-transformers does for this model). A history is
the texts of its items, most recent first (:func:`history_tokens`); a history scores
the items of its domain by cosine similarity over a temperature.

θ0 is the pretrained encoder, optionally cut to its first ``encoder_layers`` layers
(CPU scale): the regime in which the paper merges, where domain models stay close to a
useful base. The token-embedding table (30522 x 384) stays frozen at its pretrained
values. It is identical on every node and on the server, so it is a non-persistent
buffer: not trained, not in ``state_dict``, hence neither in the weights a node
uploads (about 47 MB less per model) nor in task vectors and merges.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from silorec.models.item_tokens import ItemTokens, history_tokens
from silorec.scenario.schema import ModelSettings
from silorec.text.encoders import minilm_model_path, offline_transformers

#: Texts encoded per forward pass: bounds the attention's memory (a batch of long
#: histories) without changing any result.
ENCODE_CHUNK = 128


class FrozenTokenEmbedding(nn.Module):
    """A token-embedding table held as a non-persistent buffer (see the module doc)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", table, persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


_PRETRAINED: dict[tuple[int, float], nn.Module] = {}
_PRETRAINED_LOCK = threading.Lock()


def pretrained_encoder(layers: int, dropout: float) -> nn.Module:
    """all-MiniLM-L6-v2's first ``layers`` layers with ``dropout``, its token table
    frozen; loaded once per process (offline) and never modified: callers copy it."""
    key = (layers, dropout)
    with _PRETRAINED_LOCK:
        encoder = _PRETRAINED.get(key)
        if encoder is None:
            with offline_transformers():
                from transformers import AutoModel

                encoder = AutoModel.from_pretrained(
                    minilm_model_path(),
                    num_hidden_layers=layers,
                    hidden_dropout_prob=dropout,
                    attention_probs_dropout_prob=dropout,
                    add_pooling_layer=False,  # not part of the sentence encoder
                )
            table = encoder.embeddings.word_embeddings.weight.detach()
            encoder.embeddings.word_embeddings = FrozenTokenEmbedding(table)
            _PRETRAINED[key] = encoder
        return encoder


class TextEncoderRec(nn.Module):
    """all-MiniLM-L6-v2 as a recommender: item and history texts -> unit vectors."""

    def __init__(self, settings: ModelSettings, text_dim: int | None = None) -> None:
        """``text_dim`` (the size of the frozen text embeddings text-seq reads) is
        accepted so that every model kind is built alike, and unused: this model reads
        the texts themselves."""
        super().__init__()
        self.settings = settings
        template = pretrained_encoder(settings.encoder_layers, settings.dropout)
        table = template.embeddings.word_embeddings.weight
        # Every copy shares the one frozen table (it never changes) instead of holding
        # its own 47 MB: the merge server builds one model per domain and more.
        self.bert: Any = copy.deepcopy(template, memo={id(table): table})

    @property
    def temperature(self) -> float:
        return self.settings.temperature

    def encode_texts(self, tokens: ItemTokens) -> torch.Tensor:
        """Unit-norm sentence embeddings of token rows, [n, d].

        Rows go through the encoder in chunks of similar length, each trimmed to its
        longest row (padding changes nothing but the time it costs).
        """
        order = torch.argsort(tokens.lengths)
        parts = []
        for start in range(0, len(order), ENCODE_CHUNK):
            chunk = tokens.rows(order[start : start + ENCODE_CHUNK])
            hidden = self.bert(
                input_ids=chunk.input_ids, attention_mask=chunk.attention_mask
            ).last_hidden_state
            mask = chunk.attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            parts.append(F.normalize(pooled, dim=-1))
        if not parts:
            return tokens.input_ids.new_zeros((0, self.settings.dim), dtype=torch.float32)
        return torch.cat(parts)[torch.argsort(order)]

    def encode_items(self, item_inputs: ItemTokens) -> torch.Tensor:
        """Unit-norm item representations, [n_items, d]: each item's text encoded."""
        return self.encode_texts(item_inputs)

    def encode_history_texts(
        self, item_inputs: ItemTokens, histories: torch.Tensor
    ) -> torch.Tensor:
        """Unit-norm history states, [B, d]: each history's item texts, most recent
        first, encoded as one text. ``histories`` is [B, L] of item indices into
        ``item_inputs``, left-padded with ``PAD``."""
        return self.encode_texts(
            history_tokens(item_inputs, histories, self.settings.max_sequence_tokens)
        )

    def encode_histories(
        self, item_inputs: ItemTokens, item_repr: torch.Tensor, histories: torch.Tensor
    ) -> torch.Tensor:
        """The common history interface (see :mod:`silorec.models`): this model reads
        the history's texts, so ``item_repr`` is not needed."""
        return self.encode_history_texts(item_inputs, histories)

    def scores(self, sequence_repr: torch.Tensor, item_repr: torch.Tensor) -> torch.Tensor:
        """Cosine similarity over the temperature: [..., d] x [n, d] -> [..., n]."""
        return sequence_repr @ item_repr.T / self.temperature
