"""Training the text-encoder backbone: one cut per user per epoch, sampled softmax.

Encoding every item of the domain at every step, as the text-seq objective does, is
far too slow when items are encoded by a transformer over their text. Instead each
batch scores its histories against a small candidate set, encoded with gradients:
the batch's own targets (in-batch negatives) plus ``model.negatives`` random items of
the domain. Each user contributes one example per epoch, cut at a seeded random point
of its training sequence: the history is the items before the cut, the target the
item at it.

Evaluation still ranks every item of the domain (:mod:`silorec.evaluation.protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from silorec.data.domain import DomainData
from silorec.models import ItemTokens, TextEncoderRec
from silorec.models.inputs import length_buckets, pad_left


@dataclass(frozen=True)
class SampledBatch:
    """Histories ([B, L], left-padded), their targets [B] and random negatives [m]."""

    histories: torch.Tensor
    targets: torch.Tensor
    negatives: torch.Tensor


def sampled_softmax_loss(
    model: TextEncoderRec, item_inputs: ItemTokens, batch: SampledBatch
) -> torch.Tensor:
    """Mean cross-entropy of each history against the candidates: every target of the
    batch, then the negatives. A candidate that is the same item as a row's own target
    (a repeated target, or a negative that happens to be it) is masked for that row:
    it would otherwise count as a wrong answer that is the right one."""
    candidates = torch.cat([batch.targets, batch.negatives])
    unique, position = torch.unique(candidates, return_inverse=True)
    candidate_repr = model.encode_items(item_inputs.rows(unique))[position]
    states = model.encode_history_texts(item_inputs, batch.histories)
    logits = model.scores(states, candidate_repr)  # [B, B + m]
    rows = torch.arange(len(batch.targets), device=logits.device)
    same_item = candidates[None, :] == batch.targets[:, None]
    same_item[rows, rows] = False
    return F.cross_entropy(logits.masked_fill(same_item, float("-inf")), rows)


class SampledSoftmaxObjective:
    """The training objective of :class:`TextEncoderRec` on one domain (see the
    module doc); the fine-tuning loop draws an epoch's batches, then their losses."""

    def __init__(
        self,
        model: TextEncoderRec,
        domain: DomainData,
        item_inputs: ItemTokens,
        batch_size: int,
        users: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.item_inputs = item_inputs
        self.batch_size = batch_size
        self.n_items = domain.n_items
        every = range(domain.n_users) if users is None else users.tolist()
        sequences = [domain.train_sequence(u) for u in every]
        self.sequences = [s for s in sequences if len(s) >= 2]

    @property
    def n_examples(self) -> int:
        """Examples per epoch: one per user with 2+ training items."""
        return len(self.sequences)

    def epoch_batches(self, rng: np.random.Generator) -> list[SampledBatch]:
        """This epoch's batches: a random cut per user, histories of similar length
        together, fresh negatives per batch."""
        lengths = np.array([len(s) for s in self.sequences])
        cuts = rng.integers(1, lengths)  # the target's position, 1 .. len - 1
        max_len = self.model.settings.max_len
        histories = [s[:cut][-max_len:] for s, cut in zip(self.sequences, cuts, strict=True)]
        targets = np.array(
            [s[cut] for s, cut in zip(self.sequences, cuts, strict=True)], dtype=np.int64
        )
        n_negatives = min(self.model.settings.negatives, self.n_items)
        device = self.item_inputs.device
        batches = []
        for rows, width in length_buckets(np.minimum(cuts, max_len), self.batch_size, rng):
            negatives = rng.choice(self.n_items, size=n_negatives, replace=False)
            batches.append(
                SampledBatch(
                    torch.from_numpy(pad_left([histories[r] for r in rows], width)).to(device),
                    torch.from_numpy(targets[rows]).to(device),
                    torch.from_numpy(negatives).to(device),
                )
            )
        return batches

    def loss(self, batch: SampledBatch) -> torch.Tensor:
        return sampled_softmax_loss(self.model, self.item_inputs, batch)
