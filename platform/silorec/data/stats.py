"""Summary statistics of a domain and a plain-text before/after table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from silorec.data.domain import DomainData


@dataclass(frozen=True)
class DomainStats:
    """Sizes and sequence-length statistics of one domain."""

    users: int
    items: int
    interactions: int
    evaluable_users: int
    length_min: int
    length_mean: float
    length_median: float
    length_max: int
    density: float  # interactions / (users * items)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DomainStats:
        """Inverse of :meth:`to_dict`; unknown keys are ignored, missing ones raise."""
        names = {f.name for f in fields(cls)}
        missing = names - data.keys()
        if missing:
            raise ValueError(f"domain stats lack {', '.join(sorted(missing))}")
        return cls(**{k: data[k] for k in names})


def domain_stats(domain: DomainData) -> DomainStats:
    """The statistics of ``domain``."""
    lengths = domain.lengths
    users, items, inter = domain.n_users, domain.n_items, domain.n_interactions
    return DomainStats(
        users=users,
        items=items,
        interactions=inter,
        evaluable_users=int(len(domain.evaluable_users())),
        length_min=int(lengths.min()) if users else 0,
        length_mean=float(lengths.mean()) if users else 0.0,
        length_median=float(np.median(lengths)) if users else 0.0,
        length_max=int(lengths.max()) if users else 0,
        density=inter / (users * items) if users and items else 0.0,
    )


_ROWS: list[tuple[str, str, str]] = [
    # (label, attribute, format)
    ("users", "users", "{:,}"),
    ("items", "items", "{:,}"),
    ("interactions", "interactions", "{:,}"),
    ("evaluable users", "evaluable_users", "{:,}"),
    ("length min", "length_min", "{:,}"),
    ("length mean", "length_mean", "{:,.2f}"),
    ("length median", "length_median", "{:,.1f}"),
    ("length max", "length_max", "{:,}"),
    ("density", "density", "{:.2e}"),
]


def format_stats_table(columns: dict[str, DomainStats], title: str | None = None) -> str:
    """A text table, one column per entry of ``columns`` (e.g. ``{"raw": ...,
    "prepared": ...}``), one row per statistic."""
    headers = list(columns)
    cells = [[fmt.format(getattr(columns[h], attr)) for h in headers] for _, attr, fmt in _ROWS]
    label_width = max(len(label) for label, _, _ in _ROWS)
    widths = [max(len(h), *(len(row[j]) for row in cells)) for j, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append(
        " " * label_width + "".join(f"  {h:>{w}}" for h, w in zip(headers, widths, strict=True))
    )
    for (label, _, _), row in zip(_ROWS, cells, strict=True):
        lines.append(
            f"{label:<{label_width}}"
            + "".join(f"  {c:>{w}}" for c, w in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def format_before_after(before: DomainStats, after: DomainStats, title: str | None = None) -> str:
    """The raw and the prepared (subsampled) statistics side by side."""
    return format_stats_table({"raw": before, "prepared": after}, title=title)
