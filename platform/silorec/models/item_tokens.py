"""Item texts as token ids, and histories as the concatenated texts of their items.

The text-encoder backbone reads items and histories as text. A catalogue's item texts
are tokenised once (a node: its own texts; the merge server: the texts a node
uploaded) into ``[CLS] text [SEP]`` rows, and a history is assembled from those rows
without tokenising again: ``[CLS] text(most recent) [SEP] text(previous) [SEP] ...``,
cut at a token budget (still ending in ``[SEP]``). A one-item history is then exactly
its item's own row, so a pseudo-user [i] is encoded as item i's text.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from silorec.models.text_seq import PAD
from silorec.text.encoders import minilm_model_path, offline_transformers

_TOKENIZER: list[Any] = []
_TOKENIZER_LOCK = threading.Lock()


def minilm_tokenizer() -> Any:
    """all-MiniLM-L6-v2's tokenizer (the one sentence-transformers uses), loaded once
    per process from the bundled model, offline."""
    with _TOKENIZER_LOCK:
        if not _TOKENIZER:
            with offline_transformers():
                from transformers import AutoTokenizer

                _TOKENIZER.append(AutoTokenizer.from_pretrained(minilm_model_path()))
        return _TOKENIZER[0]


@dataclass(frozen=True)
class ItemTokens:
    """Texts as BERT inputs: row ``r`` is ``[CLS] tokens [SEP]`` then padding.

    What a text-encoder model encodes a catalogue from (its *item inputs*), and the
    form histories take on their way into the encoder.
    """

    input_ids: torch.Tensor  # int64 [n, width]
    attention_mask: torch.Tensor  # int64 [n, width]: 1 on real tokens, 0 on padding
    cls_id: int
    sep_id: int

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per row, [n]."""
        return self.attention_mask.sum(dim=1)

    def to(self, device: torch.device | str) -> ItemTokens:
        return ItemTokens(
            self.input_ids.to(device), self.attention_mask.to(device), self.cls_id, self.sep_id
        )

    def rows(self, index: torch.Tensor) -> ItemTokens:
        """The rows at ``index``, without the padding columns none of them needs."""
        width = max(int(self.lengths[index].max()), 1) if len(index) else 1
        return ItemTokens(
            self.input_ids[index, :width],
            self.attention_mask[index, :width],
            self.cls_id,
            self.sep_id,
        )


def tokenize_items(texts: Sequence[str], max_tokens: int) -> ItemTokens:
    """Each text as ``[CLS] tokens [SEP]``, cut to ``max_tokens`` tokens in all."""
    tokenizer = minilm_tokenizer()
    encoded = tokenizer(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_tokens,
        return_tensors="pt",
        return_token_type_ids=False,
    )
    return ItemTokens(
        encoded["input_ids"].to(torch.int64),
        encoded["attention_mask"].to(torch.int64),
        int(tokenizer.cls_token_id),
        int(tokenizer.sep_token_id),
    )


def history_tokens(items: ItemTokens, histories: torch.Tensor, max_tokens: int) -> ItemTokens:
    """Each history as one text: its items' texts, most recent first, each followed by
    ``[SEP]``, after one ``[CLS]``; cut at ``max_tokens`` tokens (the last kept token
    becomes ``[SEP]``).

    ``histories`` is ``[B, L]`` item indices left-padded with :data:`PAD` (the last
    column is the most recent item), as the models' other inputs. Vectorised: every
    history item's tokens (its row without ``[CLS]``) are gathered at once and
    scattered to their place in the output.
    """
    newest_first = histories.flip(1)
    valid = newest_first != PAD
    index = torch.where(valid, newest_first, 0)
    pieces = items.input_ids[index, 1:]  # [B, L, width-1]: tokens after [CLS]
    piece_lengths = torch.where(valid, items.lengths[index] - 1, 0)  # [B, L]
    token_valid = torch.arange(pieces.shape[-1], device=pieces.device) < piece_lengths[..., None]
    flat_valid = token_valid.flatten(1)  # [B, L * (width-1)], row-major: item, then token
    position = flat_valid.cumsum(dim=1) - 1  # each real token's place after [CLS]
    kept = flat_valid & (position < max_tokens - 1)
    counts = piece_lengths.sum(dim=1)  # tokens after [CLS] before the cut
    used = counts.clamp(max=max_tokens - 1)
    width = 1 + int(used.max()) if len(used) else 1
    batch = histories.shape[0]
    input_ids = torch.zeros(batch, width, dtype=torch.int64, device=histories.device)
    input_ids[:, 0] = items.cls_id
    rows = torch.arange(batch, device=histories.device)[:, None].expand_as(position)
    input_ids[rows[kept], 1 + position[kept]] = pieces.flatten(1)[kept]
    cut = counts > used
    if cut.any():  # then width == max_tokens
        input_ids[cut, max_tokens - 1] = items.sep_id
    attention_mask = (torch.arange(width, device=histories.device) < 1 + used[:, None]).long()
    return ItemTokens(input_ids, attention_mask, items.cls_id, items.sep_id)
