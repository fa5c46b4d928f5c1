"""The weaving schedule: each hybrid's visits in order, packed into grid steps.

A hybrid adapter for (target T, source S) visits ``S, T, S, T, ...`` (or ``T, S,
...``) for ``R`` rounds. Hybrids of different pairs are independent, so they weave
in parallel, but one grid round sends each node at most one message: a node that is
the source of two targets, or a target with two sources, trains their hybrids in
successive steps. :func:`pack_steps` assigns visits to steps greedily, every hybrid
in its own order, and the result is as short as the busiest node allows when hybrids
do not contend (the usual case: one target and its sources).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Order = Literal["source-first", "target-first"]


@dataclass(frozen=True)
class Hybrid:
    """One hybrid adapter: woven between ``target`` and ``source``."""

    target: str
    source: str

    @property
    def key(self) -> str:
        return f"{self.target}+{self.source}"


@dataclass(frozen=True)
class Step:
    """One grid round of weaving: which hybrid each node trains, and which visit of
    that hybrid it is (1-based)."""

    index: int
    visits: dict[str, tuple[Hybrid, int]]  # node's domain -> (hybrid, visit number)


def visit_order(hybrid: Hybrid, rounds: int, order: Order) -> list[str]:
    """The domains ``hybrid`` visits, in order: ``rounds`` rounds of both nodes."""
    if rounds < 1:
        raise ValueError(f"weaving needs at least 1 round, got {rounds}")
    pair = [hybrid.source, hybrid.target] if order == "source-first" else [hybrid.target,
                                                                          hybrid.source]  # fmt: skip
    return pair * rounds


def pack_steps(hybrids: Sequence[Hybrid], rounds: int, order: Order) -> list[Step]:
    """Every hybrid's visits in order, packed into steps in which each domain trains
    at most one hybrid. Hybrids that waited longest go first, so none starves."""
    remaining = {h: visit_order(h, rounds, order) for h in hybrids}
    done = dict.fromkeys(hybrids, 0)
    waited = dict.fromkeys(hybrids, 0)
    steps: list[Step] = []
    while any(remaining.values()):
        busy: dict[str, tuple[Hybrid, int]] = {}
        candidates = sorted((h for h in hybrids if remaining[h]),
                            key=lambda h: (-waited[h], hybrids.index(h)))  # fmt: skip
        for hybrid in candidates:
            domain = remaining[hybrid][0]
            if domain in busy:
                waited[hybrid] += 1
                continue
            remaining[hybrid].pop(0)
            done[hybrid] += 1
            waited[hybrid] = 0
            busy[domain] = (hybrid, done[hybrid])
        steps.append(Step(len(steps) + 1, busy))
    return steps
