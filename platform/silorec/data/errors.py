"""The one error type of the data layer.

Every problem with input data (a missing file, a malformed line, a missing column, an
unknown item, a filter that leaves nothing) raises :class:`DataError`. Its message
names the file (and the line, column or field where there is one) and says what is
wrong, so that a node operator can fix the input without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input data that cannot be used; the message says where and why."""


def location(path: str | Path, *, line: int | None = None, field: str | None = None) -> str:
    """``"reviews.json.gz, line 12, field 'asin'"``: where a problem is, for messages."""
    out = str(path)
    if line is not None:
        out += f", line {line}"
    if field is not None:
        out += f", field '{field}'"
    return out


def preview(values: object, limit: int = 5) -> str:
    """The first few of ``values`` for an error message: ``'a', 'b', 'c' (and 7 more)``."""
    items = list(values)  # type: ignore[call-overload]
    shown = ", ".join(repr(v) for v in items[:limit])
    if len(items) > limit:
        shown += f" (and {len(items) - limit} more)"
    return shown
