"""Turning item-index sequences into the models' padded input tensors, in batches."""

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


def length_buckets(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, int]]:
    """Batches of examples of similar length, in random order, each with the width it
    needs (its longest sequence).

    Sequences are left-padded to ``max_len`` but most are far shorter (Amazon domains
    average under 10 items against a max_len of 50); trimming each batch to what it
    needs makes an epoch several times faster and leaves the loss unchanged, since
    padded positions carry no loss and cannot be attended to.
    """
    shuffled = rng.permutation(len(lengths))
    by_length = shuffled[np.argsort(lengths[shuffled], kind="stable")]
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    return [(batches[i], int(lengths[batches[i]].max())) for i in rng.permutation(len(batches))]
