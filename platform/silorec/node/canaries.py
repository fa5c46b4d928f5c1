"""Canary users: synthetic users planted in a node's training data whose items and
identifiers must never appear in anything the node sends.

Real users' sequences can resemble each other by chance; a canary's random sequence
and its long random identifier cannot. If a canary's run of items or its identifier
shows up in a payload, training data is leaving the node, beyond doubt.

Canaries are drawn from a seed derived from the scenario seed and the domain name, so
the node and a later ``silorec audit`` replay plant exactly the same ones. They hold
out no items (they only train, are never evaluated).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from silorec.data.domain import DomainData
from silorec.scenario.schema import Scenario

CANARY_PREFIX = "canary-"
#: Items per canary sequence, like a typical user of the Amazon domains.
CANARY_LENGTH = 8


@dataclass(frozen=True, eq=False)  # arrays have no plain equality
class Canaries:
    """Planted users: their identifiers and item sequences (local item indices)."""

    user_ids: list[str]
    sequences: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.user_ids)


def make_canaries(domain_name: str, n_items: int, count: int, seed: int) -> Canaries:
    """``count`` canaries over ``n_items`` items, the same for the same arguments."""
    digest = hashlib.sha256(f"{seed}\0{domain_name}\0canaries".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    user_ids = [f"{CANARY_PREFIX}{rng.bytes(16).hex()}" for _ in range(count)]
    sequences = [
        rng.integers(0, n_items, size=CANARY_LENGTH).astype(np.int32) for _ in range(count)
    ]
    return Canaries(user_ids, sequences)


def canaries_for(scenario: Scenario, domain: DomainData) -> Canaries:
    """The canaries of ``domain`` in this scenario (``audit.canaries`` of them)."""
    return make_canaries(domain.name, domain.n_items, scenario.audit.canaries, scenario.seed)


def plant_canaries(domain: DomainData, canaries: Canaries) -> DomainData:
    """``domain`` with the canaries appended as training-only users."""
    if not len(canaries):
        return domain
    lengths = np.array([len(s) for s in canaries.sequences], dtype=np.int64)
    return DomainData(
        name=domain.name,
        items=domain.items,
        user_ids=[*domain.user_ids, *canaries.user_ids],
        offsets=np.concatenate([domain.offsets, domain.offsets[-1] + np.cumsum(lengths)]),
        flat_items=np.concatenate([domain.flat_items, *canaries.sequences]),
        holdout=np.concatenate([domain.holdout, np.zeros(len(canaries), dtype=np.int8)]),
    )
