"""Pseudo-users built on the server from what nodes uploaded, never from interactions.

MergeRec's item-as-sequence users: every item i of domain k becomes a one-item
sequence [i]. Teacher scores are domain model k's scores of [i] over domain k's items,
and the pseudo-label is their argmax. The server has each domain's catalogue as text
embeddings (uploaded with the fine-tuned model) and the fine-tuned models, which is
all this needs.

Options: all items, a random subset, or one item per k-means centre (the item nearest
each centre of the catalogue's text embeddings), per domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch.nn import functional as F

Sampling = Literal["all", "random", "kmeans"]


@dataclass(frozen=True)
class PseudoUsers:
    """``domain[p]`` and ``item[p]`` of each pseudo-user p (a one-item sequence)."""

    domain: torch.Tensor  # int64 [P]
    item: torch.Tensor  # int64 [P]

    def __len__(self) -> int:
        return int(self.domain.numel())

    def counts(self, n_domains: int) -> list[int]:
        """Pseudo-users per domain."""
        return torch.bincount(self.domain, minlength=n_domains).tolist()


def build_pseudo_users(
    item_inputs: Sequence[torch.Tensor],
    sampling: Sampling,
    per_domain: int | None,
    generator: torch.Generator,
) -> PseudoUsers:
    """One-item pseudo-users for every domain: all items, or ``per_domain`` of them
    chosen at random or by k-means over the item inputs (text embeddings)."""
    domains, items = [], []
    for k, inputs in enumerate(item_inputs):
        n_items = inputs.shape[0]
        if sampling == "all" or per_domain is None or per_domain >= n_items:
            chosen = torch.arange(n_items)
        elif sampling == "random":
            chosen = torch.randperm(n_items, generator=generator)[:per_domain].sort().values
        elif sampling == "kmeans":
            chosen = kmeans_representatives(inputs.float(), per_domain, generator)
        else:  # guarded by the parameter model
            raise ValueError(f"unknown pseudo-user sampling '{sampling}'")
        domains.append(torch.full_like(chosen, k))
        items.append(chosen)
    return PseudoUsers(torch.cat(domains), torch.cat(items))


def kmeans_representatives(
    points: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 25
) -> torch.Tensor:
    """Indices of the points nearest each of ``k`` cosine k-means centres (Lloyd's
    algorithm from k random points); duplicates are dropped, so at most ``k``."""
    unit = F.normalize(points, dim=-1)
    centres = unit[torch.randperm(len(unit), generator=generator)[:k]].clone()
    for _ in range(iterations):
        assign = (unit @ centres.T).argmax(dim=1)
        for c in range(len(centres)):
            members = unit[assign == c]
            if len(members):
                centres[c] = F.normalize(members.mean(dim=0), dim=-1)
    nearest = (F.normalize(centres, dim=-1) @ unit.T).argmax(dim=1)
    return torch.unique(nearest)
