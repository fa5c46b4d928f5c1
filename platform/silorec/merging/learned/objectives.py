"""The losses learned merges minimise, per pseudo-user, averaged over a batch.

Logits are cosine similarities between the pseudo-user's sequence state and every
item of its own domain, as in the MergeRec release (cosine similarity, no scaling).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def mergerec_loss(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, kd_weight: float
) -> torch.Tensor:
    """CE(s, argmax t) + α · T² · KL(softmax(t/T) ‖ softmax(s/T)) ("single pseudo-label
    + KD"), with ``batchmean`` KL. The release uses T = 0.05 and α = 1000 (α·T² = 2.5).
    ``student`` and ``teacher`` are ``[B, n_items]`` logits of the same domain."""
    cross_entropy = F.cross_entropy(student, teacher.argmax(dim=-1))
    return cross_entropy + distillation_kl(student, teacher, temperature, kd_weight)


def distillation_kl(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float, weight: float = 1.0
) -> torch.Tensor:
    """weight · T² · KL(softmax(t/T) ‖ softmax(s/T)) with ``batchmean`` (Hinton et al.,
    2015): the distillation term of MergeRec and the whole loss of ``distill``."""
    kl = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.softmax(teacher / temperature, dim=-1),
        reduction="batchmean",
    )
    return weight * temperature**2 * kl


def entropy_loss(student: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean entropy of softmax(s/T): AdaMerging's objective on unlabelled inputs
    (Yang et al., ICLR 2024, arXiv:2310.02575). The MergeRec release applies it to the
    cosine logits directly (T = 1)."""
    log_p = F.log_softmax(student / temperature, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()
