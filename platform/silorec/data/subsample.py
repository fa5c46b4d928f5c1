"""Deterministic reduction of a domain (:class:`~silorec.scenario.Subsample`).

Steps, in this order, each skipped when its setting is ``None``:

1. ``top_items``: keep interactions with the ``top_items`` most frequent items
   (frequency = number of interactions; ties broken by the lower item index).
2. ``k_core``: repeatedly drop users and items with fewer than ``k`` interactions
   until every remaining user and item has at least ``k``.
3. ``max_users``: keep at most ``max_users`` of the remaining users, drawn without
   replacement by ``numpy.random.default_rng(seed)``; the kept users keep their order.
4. ``max_length``: keep each user's ``max_length`` most recent interactions.

Sequences stay in time order; items no longer interacted with leave the catalogue and
the rest are re-indexed ``0..m-1`` in catalogue order.

Leave-one-out after subsampling: a user keeps ``holdout = 2`` only if it had it and
still has at least 3 interactions. Its last two surviving items are the validation
and test targets: the published ones when they survived (they are the most recent
items, and ``max_length`` keeps the most recent), otherwise the two most recent
survivors. Users with ``holdout = 0`` stay training-only.

Steps 3 and 4 may leave items or users below ``k``; the k-core is a property of the
step-2 result only.
"""

from __future__ import annotations

import numpy as np

from silorec.data.domain import LOO_HOLDOUT, DomainData, ItemCatalogue
from silorec.data.errors import DataError
from silorec.scenario.schema import Subsample


def _is_noop(spec: Subsample) -> bool:
    return (
        spec.top_items is None
        and spec.k_core is None
        and spec.max_users is None
        and spec.max_length is None
    )


def subsample(domain: DomainData, spec: Subsample) -> DomainData:
    """The subsampled domain (``domain`` itself when ``spec`` changes nothing)."""
    if _is_noop(spec):
        return domain
    n_users, n_items = domain.n_users, domain.n_items
    items = domain.flat_items.astype(np.int64)
    users = np.repeat(np.arange(n_users), domain.lengths)
    keep = np.ones(len(items), dtype=bool)

    def check(step: str) -> None:
        if not keep.any():
            raise DataError(
                f"domain '{domain.name}': subsampling left no interactions after {step} "
                f"(the domain has {n_users:,} users, {n_items:,} items, "
                f"{len(items):,} interactions before subsampling)"
            )

    # 1. The most frequent items.
    if spec.top_items is not None and spec.top_items < n_items:
        counts = np.bincount(items, minlength=n_items)
        ranked = np.lexsort((np.arange(n_items), -counts))  # by count desc, then index
        allowed = np.zeros(n_items, dtype=bool)
        allowed[ranked[: spec.top_items]] = True
        keep &= allowed[items]
        check(f"top_items={spec.top_items}")

    # 2. Iterated k-core.
    if spec.k_core is not None and spec.k_core > 1:
        k = spec.k_core
        while True:
            user_counts = np.bincount(users[keep], minlength=n_users)
            item_counts = np.bincount(items[keep], minlength=n_items)
            drop = keep & ((user_counts[users] < k) | (item_counts[items] < k))
            if not drop.any():
                break
            keep &= ~drop
            if not keep.any():
                break
        check(f"k_core={k}")

    # 3. A seeded sample of users.
    if spec.max_users is not None:
        present = np.flatnonzero(np.bincount(users[keep], minlength=n_users) > 0)
        if len(present) > spec.max_users:
            rng = np.random.default_rng(spec.seed)
            chosen = np.zeros(n_users, dtype=bool)
            chosen[rng.choice(present, size=spec.max_users, replace=False)] = True
            keep &= chosen[users]

    # 4. The most recent items of each user.
    if spec.max_length is not None:
        kept = np.flatnonzero(keep)
        kept_users = users[kept]
        # Position counted from the end of each user's kept sequence (0 = most recent).
        counts = np.bincount(kept_users, minlength=n_users)
        ends = np.cumsum(counts)
        from_end = ends[kept_users] - 1 - np.arange(len(kept))
        keep[kept[from_end >= spec.max_length]] = False

    return _rebuild(domain, keep, users, items)


def _rebuild(
    domain: DomainData, keep: np.ndarray, users: np.ndarray, items: np.ndarray
) -> DomainData:
    """The domain restricted to the ``keep`` interactions, re-indexed."""
    kept_users = users[keep]
    kept_items = items[keep]
    user_counts = np.bincount(kept_users, minlength=domain.n_users)
    user_sel = np.flatnonzero(user_counts > 0)
    item_sel = np.flatnonzero(np.bincount(kept_items, minlength=domain.n_items) > 0)
    remap = np.full(domain.n_items, -1, dtype=np.int64)
    remap[item_sel] = np.arange(len(item_sel))

    lengths = user_counts[user_sel]
    offsets = np.zeros(len(user_sel) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    holdout = np.where(
        (domain.holdout[user_sel] == LOO_HOLDOUT) & (lengths >= LOO_HOLDOUT + 1), LOO_HOLDOUT, 0
    ).astype(np.int8)
    catalogue = ItemCatalogue(
        ids=[domain.items.ids[i] for i in item_sel],
        fields={
            name: [values[i] for i in item_sel] for name, values in domain.items.fields.items()
        },
    )
    return DomainData(
        name=domain.name,
        items=catalogue,
        user_ids=[domain.user_ids[u] for u in user_sel],
        offsets=offsets,
        flat_items=remap[kept_items],
        holdout=holdout,
    )
