"""Keep the best state a learned merge reached on its own held-out objective.

A learned merge starts from a training-free merge. Its optimiser may wander off
(MergeRec's loss *rose* over 500 steps on one held-out scenario), and nothing but its
own objective can tell on the server. So the objective is measured on a fixed
held-out set of pseudo-users before the first step and every few steps, and the merge
returns the best state seen, the starting point included: it is never worse on its
own objective than where it started.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch


class BestSoFar:
    """The lowest held-out loss seen so far and a copy of the state that had it."""

    def __init__(self) -> None:
        self.loss = math.inf
        self.step = -1
        self.state: dict[str, torch.Tensor] = {}
        self.curve: list[dict[str, float]] = []

    def offer(
        self, step: int, loss: float, state: Callable[[], Mapping[str, torch.Tensor]]
    ) -> bool:
        """Record ``loss`` at ``step``; keep a copy of ``state()`` if it is the best
        (ties keep the earlier state). Returns whether it was kept."""
        self.curve.append({"step": step, "loss": loss})
        if not (loss < self.loss) and self.step >= 0:
            return False
        if not math.isfinite(loss) and self.step >= 0:
            return False
        self.loss, self.step = loss, step
        self.state = {name: t.detach().clone() for name, t in state().items()}
        return True

    def summary(self) -> dict[str, object]:
        """What diagnostics record: the held-out curve, the chosen step and loss."""
        start = self.curve[0]["loss"] if self.curve else math.nan
        return {
            "heldout_curve": self.curve,
            "heldout_start": start,
            "heldout_best": self.loss,
            "best_step": self.step,
        }
