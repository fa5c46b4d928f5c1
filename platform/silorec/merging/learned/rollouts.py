"""Pseudo-user sequences generated on the server by rolling out a domain's own model.

MergeRec's pseudo-users are one-item sequences. To distil a whole merged model, the
server needs histories that look like the domain's users: it starts each sequence at
a catalogue item and lets the domain's fine-tuned model (the teacher) pick the next
item, sampled from its softmax over the catalogue (items already in the sequence are
excluded), up to a length drawn from the domain's reported mean sequence length
(``n_interactions / n_users`` from the describe reply). Nothing here comes from
interactions: only the catalogue's text embeddings and the uploaded weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from silorec.padding import PAD


@dataclass(frozen=True)
class Rollouts:
    """Left-padded item sequences ``[P, L]`` of one domain and each one's length."""

    sequences: torch.Tensor  # int64 [P, L], PAD on the left
    lengths: torch.Tensor  # int64 [P], 1..L

    def __len__(self) -> int:
        return int(self.lengths.numel())

    def prefixes(self, rows: torch.Tensor, cuts: torch.Tensor) -> torch.Tensor:
        """The first ``cuts[j]`` items of sequence ``rows[j]``, left-padded to the
        longest cut: histories whose next item the teacher is asked about."""
        width = int(cuts.max())
        total = self.sequences.shape[1]
        # Output column p of row j holds item (p − (width − cut)) of the rollout, which
        # starts at column total − length of its left-padded row.
        offset = (total - self.lengths[rows] - width + cuts)[:, None]
        columns = offset + torch.arange(width)
        kept = columns >= total - self.lengths[rows][:, None]
        items = self.sequences[rows].gather(1, columns.clamp(0, total - 1))
        return torch.where(kept, items, PAD)


def draw_lengths(
    count: int, mean_length: float, max_length: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` lengths in ``[2, max_length]`` with mean close to ``mean_length``:
    2 + a geometric number of further items (user histories are long-tailed)."""
    extra = max(mean_length - 2.0, 1e-3)
    success = 1.0 / (1.0 + extra)  # geometric on {0, 1, ...} with mean `extra`
    uniform = torch.rand(count, generator=generator, dtype=torch.float64).clamp_min(1e-12)
    geometric = torch.floor(torch.log(uniform) / torch.log1p(torch.tensor(-success)))
    return (2 + geometric.long()).clamp(2, max_length)


@torch.no_grad()
def roll_out(
    teacher: torch.nn.Module,
    item_inputs: Any,
    item_repr: torch.Tensor,
    starts: torch.Tensor,
    lengths: torch.Tensor,
    *,
    temperature: float,
    generator: torch.Generator,
    batch_size: int = 512,
) -> Rollouts:
    """Sequences that start at ``starts`` and continue with items the ``teacher``
    samples from ``softmax(scores / temperature)``, never repeating an item, each up
    to its ``lengths`` entry. ``item_repr`` is the teacher's ``encode_items``."""
    width = int(lengths.max())
    n_items = item_repr.shape[0]
    device = item_repr.device
    sequences = torch.full((len(starts), width), PAD, dtype=torch.int64)
    for first in range(0, len(starts), batch_size):
        rows = slice(first, first + batch_size)
        current = starts[rows].to(device)[:, None]
        seen = torch.zeros(len(current), n_items, dtype=torch.bool, device=device)
        seen[torch.arange(len(current), device=device), current[:, 0]] = True
        for _ in range(1, int(lengths[rows].max())):
            states = teacher.encode_histories(item_inputs, item_repr, current)
            logits = teacher.scores(states, item_repr) / temperature
            logits = logits.masked_fill(seen, float("-inf"))
            probabilities = torch.softmax(logits.double(), dim=-1).cpu()
            picked = torch.multinomial(probabilities, 1, generator=generator).to(device)
            seen[torch.arange(len(current), device=device), picked[:, 0]] = True
            current = torch.cat([current, picked], dim=1)
        # Keep each sequence's first `length` items, right-aligned (left padding).
        for j, length in enumerate(lengths[rows].tolist()):
            sequences[first + j, width - length :] = current[j, :length].cpu()
    return Rollouts(sequences, lengths.clone())
