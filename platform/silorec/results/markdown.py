"""Markdown formatting shared by the run report's sections: values, ratios, bytes,
durations, safe table cells and tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

DASH = "—"
NA = "n/a"


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt_value(v: Any, digits: int = 4) -> str:
    """A metric value with ``digits`` decimals; "—" when missing."""
    return DASH if is_missing(v) else f"{float(v):.{digits}f}"


def fmt_ratio(v: Any) -> str:
    return NA if is_missing(v) else f"{float(v):.3f}"


def fmt_share(v: Any) -> str:
    return NA if is_missing(v) else f"{100 * float(v):.1f} %"


def fmt_bytes(n: Any) -> str:
    """Bytes in binary units: ``1.2 MiB``."""
    if is_missing(n):
        return DASH
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - unreachable


def fmt_seconds(s: Any) -> str:
    """A duration: ``12.3 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if is_missing(s):
        return DASH
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        m, sec = divmod(round(s), 60)
        return f"{m} min {sec:02d} s"
    h, rem = divmod(round(s), 3600)
    return f"{h} h {rem // 60:02d} min"


def fmt_time(iso: str | None) -> str:
    if not iso:
        return DASH
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    out = dt.strftime("%Y-%m-%d %H:%M:%S")
    return f"{out} {dt.tzname()}" if dt.tzinfo is not None else out


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, one line)."""
    s = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    return s.strip()


def code(text: Any) -> str:
    """Inline code (model labels, names), safe in a table cell."""
    s = str(text).replace("\n", " ").replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], align: Sequence[str] | None = None
) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is 'l' or 'r' per column."""
    align = align or ["l"] * len(header)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
