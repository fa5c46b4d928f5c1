"""What a message carries, in two forms that never depend on Flower.

- :class:`Payload` holds the data itself (every array's raw bytes, every config and
  metric value): what the node-side detectors scan before a reply may leave.
- :class:`PayloadInfo` describes it without the data: each record's name and kind,
  each array's name, shape, dtype, byte count and SHA-256, the keys and values of
  config/metric records. This is what the audit logs hold on both sides, what the
  wire policy judges, and what ``silorec audit`` cross-checks.

An array's SHA-256 is taken over its values as C-ordered bytes in its own dtype, so a
reviewer can recompute it with ``hashlib.sha256(np.ascontiguousarray(a).tobytes())``
independently of how Flower frames it on the wire.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

RecordKind = Literal["array", "config", "metric"]

#: Flower's serialisation type for numpy arrays; anything else is opaque bytes.
NUMPY_STYPE = "numpy.ndarray"
#: Bytes counted for a number in a config/metric record (what a network carries).
SCALAR_BYTES = 8


def dtype_label(dtype: np.dtype[Any]) -> str:
    """``float32`` for a native dtype, numpy's ``>f4`` form otherwise (an array in
    foreign byte order must not pass for an ordinary one)."""
    return dtype.name if dtype.isnative else dtype.str


# ---------------------------------------------------------------------------
# The payload with its data (node side: what the detectors scan).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WireArray:
    """One array as it would travel: declared shape and dtype, and its raw bytes."""

    shape: tuple[int, ...]
    dtype: str
    buffer: np.ndarray  # uint8, 1-D: the bytes of the values (or the opaque data)
    stype: str = NUMPY_STYPE

    @classmethod
    def from_numpy(cls, array: np.ndarray) -> WireArray:
        values = np.ascontiguousarray(array)
        raw = values.reshape(-1).view(np.uint8) if values.size else np.zeros(0, np.uint8)
        return cls(tuple(int(n) for n in values.shape), dtype_label(values.dtype), raw)

    @classmethod
    def opaque(cls, shape: tuple[int, ...], dtype: str, stype: str, data: bytes) -> WireArray:
        """An array Flower could not read as numpy: only its bytes are known."""
        return cls(tuple(shape), dtype, np.frombuffer(data, dtype=np.uint8), stype)


@dataclass(frozen=True)
class WireRecord:
    """One record of a message: arrays (``kind="array"``) or key -> value entries."""

    name: str
    kind: RecordKind
    arrays: Mapping[str, WireArray] = field(default_factory=dict)
    entries: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Payload:
    """A message's content, free of Flower types, in record order."""

    records: tuple[WireRecord, ...]


# ---------------------------------------------------------------------------
# The description without data (both sides: logs, policy, cross-checks).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrayInfo:
    """An array without its values."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    sha256: str
    stype: str = NUMPY_STYPE

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "nbytes": self.nbytes,
            "sha256": self.sha256,
        }
        if self.stype != NUMPY_STYPE:
            out["stype"] = self.stype
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArrayInfo:
        return cls(
            name=str(data["name"]),
            shape=tuple(int(n) for n in data["shape"]),
            dtype=str(data["dtype"]),
            nbytes=int(data["nbytes"]),
            sha256=str(data["sha256"]),
            stype=str(data.get("stype", NUMPY_STYPE)),
        )


@dataclass(frozen=True)
class RecordInfo:
    """A record without array values. ``entries`` hold config/metric values in JSON
    form (bytes as ``{"bytes": n, "sha256": h}``), or, for a withheld record, only
    each value's type and size (see :func:`withheld_value`)."""

    name: str
    kind: RecordKind
    arrays: tuple[ArrayInfo, ...] = ()
    entries: Mapping[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the values: array bytes, or keys plus values of entries."""
        if self.kind == "array":
            return sum(a.nbytes for a in self.arrays)
        return sum(len(k.encode()) + _json_value_bytes(v) for k, v in self.entries.items())

    def to_json(self) -> dict[str, Any]:
        if self.kind == "array":
            return {
                "name": self.name,
                "kind": self.kind,
                "arrays": [a.to_json() for a in self.arrays],
            }
        return {"name": self.name, "kind": self.kind, "entries": dict(self.entries)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordInfo:
        kind = str(data["kind"])
        if kind not in ("array", "config", "metric"):
            raise ValueError(f"record '{data.get('name')}': unknown kind '{kind}'")
        return cls(
            name=str(data["name"]),
            kind=kind,  # type: ignore[arg-type]
            arrays=tuple(ArrayInfo.from_json(a) for a in data.get("arrays", [])),
            entries=dict(data.get("entries", {})),
        )


@dataclass(frozen=True)
class PayloadInfo:
    """A message's content without its data."""

    records: tuple[RecordInfo, ...] = ()

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.records)

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON description: equal on both sides of the wire
        exactly when the same records, arrays (by hash) and values travelled."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def record(self, name: str) -> RecordInfo | None:
        return next((r for r in self.records if r.name == name), None)

    def summary(self, max_items: int = 4) -> str:
        """One line saying what the payload holds (names, kinds, dtypes, shapes)."""
        return "; ".join(_record_summary(r, max_items) for r in self.records) or "nothing"

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records]

    @classmethod
    def from_json(cls, data: list[Mapping[str, Any]]) -> PayloadInfo:
        return cls(tuple(RecordInfo.from_json(r) for r in data))


def _record_summary(record: RecordInfo, max_items: int) -> str:
    if record.kind == "array":
        items = [f"{a.name} {a.dtype} {list(a.shape)}" for a in record.arrays]
    else:
        items = list(record.entries)
    more = len(items) - max_items
    shown = ", ".join(items[:max_items]) + (f", +{more} more" if more > 0 else "")
    return f"{record.name} ({record.kind}: {shown or 'empty'})"


def describe(
    payload: Payload, *, withhold_values: bool = False, redact: Callable[[str], str] | None = None
) -> PayloadInfo:
    """The description of ``payload``.

    ``withhold_values`` keeps only each config/metric value's type and size
    (for a reply that was blocked: it may carry interaction data, which must not be
    copied into a log). ``redact`` rewrites record names, array names and keys (a
    blocked reply may hide an identifier in a name).
    """
    clean = redact or (lambda text: text)
    records = []
    for record in payload.records:
        arrays = tuple(
            ArrayInfo(
                name=clean(name),
                shape=array.shape,
                dtype=array.dtype,
                nbytes=int(array.buffer.nbytes),
                sha256=hashlib.sha256(array.buffer).hexdigest(),
                stype=array.stype,
            )
            for name, array in record.arrays.items()
        )
        encode = withheld_value if withhold_values else json_value
        entries = {clean(key): encode(value) for key, value in record.entries.items()}
        records.append(RecordInfo(clean(record.name), record.kind, arrays, entries))
    return PayloadInfo(tuple(records))


def json_value(value: Any) -> Any:
    """A config/metric value in JSON form: bytes become ``{"bytes": n, "sha256": h}``."""
    if isinstance(value, bytes):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def withheld_value(value: Any) -> dict[str, Any]:
    """A value's type and size, never its content (not even a hash: a short
    identifier's hash is confirmed by hashing a list of candidates)."""
    if isinstance(value, list):
        kinds = sorted({withheld_value(v)["withheld"] for v in value})
        return {"withheld": f"list[{'|'.join(kinds)}]", "length": len(value)}
    raw = value if isinstance(value, bytes) else str(value).encode()
    return {"withheld": type(value).__name__, "size": len(raw)}


def _json_value_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_json_value_bytes(v) for v in value)
    if isinstance(value, dict):  # bytes in JSON form, or a withheld value
        return int(value.get("bytes", value.get("size", SCALAR_BYTES)))
    return SCALAR_BYTES
