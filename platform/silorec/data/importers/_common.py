"""Helpers shared by the importers: item text normalisation and turning a table of
interaction events into a :class:`DomainData` with flat numpy arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from silorec.data.domain import LOO_HOLDOUT, DomainData, ItemCatalogue

#: Text fields every importer fills (empty strings where a source has nothing).
TEXT_FIELDS = ("title", "brand", "category")


def text_value(value: object) -> str:
    """One item text field as a string: ``None``/NaN -> ``""``, lists (also nested,
    like the 2014 Amazon ``categories``) joined with spaces, everything else ``str``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple):
        parts = (text_value(v) for v in value)
        return " ".join(p for p in parts if p)
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value).strip()


def holdout_for_lengths(lengths: np.ndarray) -> np.ndarray:
    """The leave-one-out rule for sources without a published split: users with at
    least ``LOO_HOLDOUT + 1`` (3) interactions hold out their last two items."""
    return np.where(lengths >= LOO_HOLDOUT + 1, LOO_HOLDOUT, 0).astype(np.int8)


def domain_from_events(
    name: str,
    *,
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    times: np.ndarray,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    fields: dict[str, list[str]],
) -> DomainData:
    """Build a domain from one row per interaction.

    ``user_codes`` index ``user_ids`` and ``item_codes`` index ``item_ids``; every
    user must have at least one event. Each user's events are ordered by ``times``
    with a stable sort, so ties keep their input order. Users keep the order of
    ``user_ids``; holdout follows :func:`holdout_for_lengths`.
    """
    user_codes = np.asarray(user_codes, dtype=np.int64)
    order = np.argsort(np.asarray(times), kind="stable")
    order = order[np.argsort(user_codes[order], kind="stable")]
    counts = np.bincount(user_codes, minlength=len(user_ids))
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return DomainData(
        name=name,
        items=ItemCatalogue(ids=list(item_ids), fields=fields),
        user_ids=list(user_ids),
        offsets=offsets,
        flat_items=np.asarray(item_codes, dtype=np.int32)[order],
        holdout=holdout_for_lengths(counts),
    )
