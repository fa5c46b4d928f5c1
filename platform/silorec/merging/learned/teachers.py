"""What every learned merge does the same way: load a domain's uploaded model as a
frozen teacher, and draw the student's dropout from the merge's own seed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from silorec.merging.base import MergeContext
from silorec.merging.task_vectors import Weights


def load_teacher(weights: Weights, context: MergeContext) -> nn.Module:
    """The context's model with ``weights``, on its device, in eval mode."""
    model = context.build_model().to(context.device)
    model.load_state_dict({name: t.to(context.device) for name, t in weights.items()})
    return model.eval()


@contextmanager
def seeded_dropout(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Dropout draws from torch's global generator: seed it from ``generator`` inside a
    forked state, so a merge depends on its seed alone, not on what ran before it in
    this process (the caller's random state is left as it was)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
