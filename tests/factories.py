"""Small hand-made objects and checks shared by tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from silorec.data.domain import LOO_HOLDOUT, DomainData, ItemCatalogue


def make_domain(
    sequences: list[list[int]],
    holdout: list[int] | None = None,
    n_items: int | None = None,
    name: str = "toy",
) -> DomainData:
    """A domain from explicit sequences. ``holdout`` defaults to leave-one-out (2) for
    users with 3+ items; ``n_items`` to the largest item index + 1. Items get titles."""
    n_items = n_items if n_items is not None else max(max(s) for s in sequences) + 1
    lengths = [len(s) for s in sequences]
    if holdout is None:
        holdout = [LOO_HOLDOUT if n >= LOO_HOLDOUT + 1 else 0 for n in lengths]
    return DomainData(
        name=name,
        items=ItemCatalogue(
            ids=[f"i{i}" for i in range(n_items)],
            fields={"title": [f"Item {i}" for i in range(n_items)]},
        ),
        user_ids=[f"u{u}" for u in range(len(sequences))],
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        flat_items=np.array([i for s in sequences for i in s]),
        holdout=np.asarray(holdout),
    )


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live (not zombie) processes that mention ``text``, e.g. a
    private FLWR_HOME: what a test that starts Flower processes must leave behind."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if text in cmdline and "State:\tZ" not in status:
            found.append(f"{proc.name}: {cmdline}")
    return found
