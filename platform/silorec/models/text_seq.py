"""A text-based sequential recommender whose every parameter is domain-agnostic.

Items are never looked up in an ID table: each item is represented by a trainable
adaptor applied to its frozen text embedding, so the same weights can score the items
of any domain, including domains they never saw, and models fine-tuned in different
domains share one parameter space and can be merged.

A causal transformer encodes the sequence (pre-norm blocks, recency positions), and
a sequence scores every item of its domain by cosine similarity over a temperature.

Attention is built from ``nn.Linear`` layers (no ``nn.MultiheadAttention``) so that
Opacus can compute per-sample gradients for DP-SGD.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from silorec.padding import PAD
from silorec.scenario.schema import ModelSettings

__all__ = ["PAD", "TextSeqRec"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention from plain linear layers."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        """``x``: [B, L, d]; ``blocked``: [B, 1, L, L] bool, True where a query may
        not attend to a key."""
        batch, length, dim = x.shape
        head_dim = dim // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        logits = (q @ k.transpose(-2, -1)) / math.sqrt(head_dim)
        logits = logits.masked_fill(blocked, torch.finfo(logits.dtype).min)
        attention = self.dropout(torch.softmax(logits, dim=-1))
        mixed = (attention @ v).transpose(1, 2).reshape(batch, length, dim)
        return self.out(mixed)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: attention then a GELU feed-forward, both residual."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = CausalSelfAttention(dim, heads, dropout)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), blocked))
        return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))


class TextAdaptor(nn.Module):
    """Maps frozen text embeddings into the recommender's item space."""

    def __init__(self, text_dim: int, dim: int, kind: str, dropout: float) -> None:
        super().__init__()
        if kind == "linear":
            self.layers: nn.Module = nn.Linear(text_dim, dim)
        elif kind == "mlp":
            self.layers = nn.Sequential(
                nn.Linear(text_dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim)
            )
        else:  # the schema restricts `adaptor`; this guards direct construction
            raise ValueError(f"unknown adaptor kind '{kind}' (expected 'linear' or 'mlp')")
        self.norm = nn.LayerNorm(dim)

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layers(text_embeddings))


class TextSeqRec(nn.Module):
    """Adaptor over frozen text embeddings + causal transformer + cosine scores."""

    def __init__(self, settings: ModelSettings, text_dim: int) -> None:
        super().__init__()
        self.settings = settings
        self.text_dim = text_dim
        self.adaptor = TextAdaptor(text_dim, settings.dim, settings.adaptor, settings.dropout)
        # Position p embeds "p steps before the most recent item": recency is what
        # matters for the next item, and it means the same in every domain.
        self.recency = nn.Embedding(settings.max_len, settings.dim)
        # Small, as in BERT/SASRec: at N(0, 1) the position signal drowns the item
        # signal at first and training starts much slower (measured on Amazon Beauty).
        nn.init.normal_(self.recency.weight, std=0.02)
        self.input_dropout = nn.Dropout(settings.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(settings.dim, settings.heads, settings.dropout)
            for _ in range(settings.layers)
        )
        self.final_norm = nn.LayerNorm(settings.dim)
        if settings.init == "identity":
            self._start_as_text_similarity()

    def _start_as_text_similarity(self) -> None:
        """Make the untrained model rank items by text similarity to the last item.

        The adaptor becomes a (semi-)orthogonal projection, which keeps cosines between
        text embeddings (exactly when ``dim`` equals the text size); every transformer
        block starts as the identity (its residual branches end in zero weights); the
        position signal starts at zero. The last state is then the last item's own
        representation, up to layer norms. Fine-tuning moves away from there, and
        task vectors stay small relative to a base that is already useful: the regime
        in which merging is known to work.
        """
        if not isinstance(self.adaptor.layers, nn.Linear):
            raise ValueError("model.init 'identity' needs model.adaptor 'linear'")
        with torch.no_grad():
            nn.init.orthogonal_(self.adaptor.layers.weight)
            self.adaptor.layers.bias.zero_()
            self.recency.weight.zero_()
            for block in self.blocks:
                block.attention.out.weight.zero_()
                block.attention.out.bias.zero_()
                block.feed_forward[-1].weight.zero_()
                block.feed_forward[-1].bias.zero_()

    @property
    def temperature(self) -> float:
        return self.settings.temperature

    def encode_items(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Unit-norm item representations, [n_items, d]."""
        return F.normalize(self.adaptor(text_embeddings), dim=-1)

    def encode_sequences(self, item_repr: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """Unit-norm sequence states, [B, L, d]: state ``t`` summarises items ``<= t``.

        ``sequences`` is [B, L] of item indices, left-padded with :data:`PAD`, so the
        last column is every user's most recent item.
        """
        batch, length = sequences.shape
        if length > self.settings.max_len:
            raise ValueError(
                f"sequences of length {length} exceed the model's max_len {self.settings.max_len}"
            )
        padding = sequences == PAD
        padded_items = torch.cat([item_repr, item_repr.new_zeros(1, item_repr.shape[1])])
        index = torch.where(padding, item_repr.shape[0], sequences)
        x = padded_items[index]
        recency = torch.arange(length - 1, -1, -1, device=sequences.device)
        x = self.input_dropout(x + self.recency(recency))
        blocked = self._attention_mask(padding)
        for block in self.blocks:
            x = block(x, blocked)
        return F.normalize(self.final_norm(x), dim=-1)

    def encode_histories(
        self, item_inputs: torch.Tensor, item_repr: torch.Tensor, histories: torch.Tensor
    ) -> torch.Tensor:
        """The common history interface (see :mod:`silorec.models`): unit-norm states
        [B, d] of ``histories`` ([B, L], left-padded with :data:`PAD`), the last state
        of :meth:`encode_sequences`. This model reads histories through the item
        representations, so ``item_inputs`` is not needed."""
        return self.encode_sequences(item_repr, histories)[:, -1]

    @staticmethod
    def _attention_mask(padding: torch.Tensor) -> torch.Tensor:
        """Block future keys and padded keys; every query keeps its own key so that
        rows of padded queries never become all-blocked (their output is unused)."""
        length = padding.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=padding.device).triu(1)
        own = torch.eye(length, dtype=torch.bool, device=padding.device)
        blocked = future | (padding[:, None, :] & ~own)
        return blocked[:, None, :, :]

    def scores(self, sequence_repr: torch.Tensor, item_repr: torch.Tensor) -> torch.Tensor:
        """Cosine similarity over the temperature: [..., d] x [n, d] -> [..., n]."""
        return sequence_repr @ item_repr.T / self.temperature

    def forward(
        self, text_embeddings: torch.Tensor, sequences: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sequence states [B, L, d], item representations [n, d])``.

        One entry point so that ``torch.func.functional_call`` can run the model on
        weights materialised outside it (learned merge weights).
        """
        item_repr = self.encode_items(text_embeddings)
        return self.encode_sequences(item_repr, sequences), item_repr
