"""Turning item-index sequences into the model's padded input tensors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from silorec.models.text_seq import PAD


def pad_left(sequences: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """[B, max_len] int64, each row the sequence's last ``max_len`` items, left-padded
    with :data:`PAD` so that the last column is always the most recent item."""
    out = np.full((len(sequences), max_len), PAD, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        tail = sequence[-max_len:]
        if len(tail):
            out[row, max_len - len(tail) :] = tail
    return out
