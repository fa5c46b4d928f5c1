"""Byte scans for interaction data in anything a node is about to send.

:class:`SequenceScanner` finds runs of three consecutive item ids of a local user's
sequence, :class:`IdentifierScanner` raw user and item identifier strings, both at
*any* byte offset of a buffer: a payload's arrays, its strings and bytes.

Item ids are the node's local item indices (``0 .. n_items-1``), the integers its
sequences hold in memory. They are searched as uint16, int32 and int64 in both byte
orders at every offset (a misaligned copy is still a copy), as float16, float32 and
float64 (ids cast to floats), and shifted by one (ids counted from 1). A run is three
consecutive items of a user's sequence, in order or reversed, of its even or odd
positions (a sequence split in two), or of the user's items sorted (a history stored
as a set). What such a scan cannot see (8-bit byte planes, XOR or any other keyed
re-coding, deltas of sorted ids, ids in low mantissa bits or added to weights as
tiny offsets) is listed in docs/threat-model.md: differential privacy is the answer
to what a content scan cannot tell from noise. Runs that repeat an item (``0, 0, 5``) are not searched: zero bytes fill
ordinary float buffers (sparse embeddings, zero biases), and read as integers at a
shifted offset they produce exactly such runs by chance. Runs of three distinct items
are what a user's history is mostly made of.

The scans are vectorised over whole buffers: on an Amazon-sized train reply (the
default model's weights plus the embeddings of 2,000 items, 3.6 MB, against 6,000
users) both together take about 0.2 s on one CPU core (timed in
``tests/test_audit_detectors.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Length of the item-id runs searched for.
RUN = 3
#: Integer and float encodings of item ids searched for, with their names.
ENCODINGS: tuple[tuple[str, str], ...] = (
    ("<u2", "uint16 little-endian"),
    (">u2", "uint16 big-endian"),
    ("<i4", "int32 little-endian"),
    (">i4", "int32 big-endian"),
    ("<i8", "int64 little-endian"),
    (">i8", "int64 big-endian"),
    ("<f2", "float16 little-endian"),
    (">f2", "float16 big-endian"),
    ("<f4", "float32 little-endian"),
    (">f4", "float32 big-endian"),
    ("<f8", "float64 little-endian"),
    (">f8", "float64 big-endian"),
)
#: 16-bit readings are skipped when the known runs are more than this share of all
#: runs of three distinct items the catalogue allows (a catalogue of a few dozen items).
MAX_RUN_DENSITY_16_BIT = 1e-3
#: Offsets added to the ids that are searched too (0: as stored; 1: counted from 1).
ID_OFFSETS = (0, 1)
#: Identifiers are first matched on this many leading bytes (a 2^24-entry table).
_PREFIX_BYTES = 3


@dataclass(frozen=True)
class SequenceHit:
    """Runs of item ids of one group of sequences found in one encoding."""

    group: str  # e.g. "user" or "canary"
    encoding: str
    offset: int  # byte offset of the first run found
    runs: int  # how many runs were found


@dataclass(frozen=True)
class IdentifierHit:
    """Occurrences of identifiers of one kind."""

    kind: str  # e.g. "user", "item", "canary"
    count: int


class SequenceScanner:
    """Every run of :data:`RUN` consecutive item ids of some groups of sequences."""

    def __init__(self, n_items: int, groups: Mapping[str, Sequence[np.ndarray]]) -> None:
        """``groups`` maps a name (``"user"``, ``"canary"``) to its sequences of
        item indices in ``0 .. n_items-1``."""
        self.n_items = int(n_items)
        self._keys = {name: _run_keys(seqs, self.n_items) for name, seqs in groups.items()}
        possible = self.n_items * (self.n_items - 1) * (self.n_items - 2)
        #: Whether 2-byte readings are searched: only where the known runs are rare
        #: among all possible ones, else chance matches in ordinary weights (whose
        #: 16-bit halves often look like small float16 integers) would block honest
        #: replies of a tiny catalogue.
        self.scans_16_bit = possible > 0 and self.n_runs / possible <= MAX_RUN_DENSITY_16_BIT

    @property
    def n_runs(self) -> int:
        return sum(len(k) for k in self._keys.values())

    def scan(self, buffer: np.ndarray) -> list[SequenceHit]:
        """Hits in ``buffer`` (uint8, 1-D), per group and encoding."""
        hits: list[SequenceHit] = []
        if self.n_runs == 0:
            return hits
        for dtype_str, label in ENCODINGS:
            dtype = np.dtype(dtype_str)
            if dtype.itemsize == 2 and not self.scans_16_bit:
                continue
            for offset in range(dtype.itemsize):
                values = _view(buffer, offset, dtype)
                if len(values) < RUN:
                    continue
                for shift in ID_OFFSETS:
                    positions, keys = self._candidate_runs(values, shift)
                    name = label if shift == 0 else f"{label}, ids + {shift}"
                    for group, known in self._keys.items():
                        found = _member(keys, known)
                        if found.any():
                            first = offset + int(positions[found][0]) * dtype.itemsize
                            hits.append(SequenceHit(group, name, first, int(found.sum())))
        return _merge_offsets(hits)

    def scan_values(self, values: np.ndarray, min_runs: int = 1) -> list[SequenceHit]:
        """Hits among ``values`` read as numbers, in order (a reply's scalars are
        numbers, not bytes: no byte offset or encoding applies), ids as they are and
        + 1; a group is reported only with at least ``min_runs`` runs."""
        hits: list[SequenceHit] = []
        values = np.asarray(values, dtype=np.float64)
        if self.n_runs == 0 or len(values) < RUN:
            return hits
        for shift in ID_OFFSETS:
            positions, keys = self._candidate_runs(values, shift)
            name = "numbers" if shift == 0 else f"numbers, ids + {shift}"
            for group, known in self._keys.items():
                found = _member(keys, known)
                if int(found.sum()) >= min_runs:
                    first = int(positions[found][0]) * 8
                    hits.append(SequenceHit(group, name, first, int(found.sum())))
        return hits

    def _candidate_runs(self, values: np.ndarray, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Positions and keys of the runs whose values, less ``shift``, are all valid
        item ids."""
        if values.dtype.kind in "iu":
            # Negative values wrap around to huge ones when read as unsigned.
            unsigned = values.view(values.dtype.str.replace("i", "u")).astype(np.uint64)
            valid = (unsigned >= shift) & (unsigned < self.n_items + shift)
            values = unsigned - np.uint64(shift)
        else:
            with np.errstate(invalid="ignore"):
                values = values.astype(np.float64) - shift
                valid = (values >= 0) & (values < self.n_items) & (np.floor(values) == values)
        starts = valid[: len(valid) - RUN + 1].copy()
        for shift in range(1, RUN):
            starts &= valid[shift : len(valid) - RUN + 1 + shift]
        positions = np.flatnonzero(starts)
        ids = np.stack([values[positions + k] for k in range(RUN)]).astype(np.uint64)
        return positions, _encode(ids, self.n_items)


def _view(buffer: np.ndarray, offset: int, dtype: np.dtype[Any]) -> np.ndarray:
    """``buffer`` from byte ``offset`` read as ``dtype``, copied into aligned memory in
    native byte order (arithmetic on misaligned or foreign-order data is slow)."""
    count = (len(buffer) - offset) // dtype.itemsize
    raw = buffer[offset : offset + count * dtype.itemsize]
    return np.frombuffer(raw.tobytes(), dtype=dtype).astype(dtype.newbyteorder("="))


class IdentifierScanner:
    """Raw identifier strings, by kind, as UTF-8 at any byte offset."""

    def __init__(self, identifiers: Mapping[str, Iterable[str]], min_length: int) -> None:
        """``identifiers`` maps a kind (``"user"``, ``"item"``, ``"canary"``) to its
        identifiers; those shorter than ``min_length`` characters are not searched
        (short strings occur by chance in binary data); at least 3 are needed."""
        if min_length < _PREFIX_BYTES:
            raise ValueError(
                f"identifiers shorter than {_PREFIX_BYTES} characters cannot be "
                f"searched (min_length={min_length})"
            )
        self._by_prefix: dict[int, list[tuple[bytes, str]]] = {}
        for kind, values in identifiers.items():
            for text in values:
                if len(text) >= min_length:
                    raw = text.encode("utf-8")
                    self._by_prefix.setdefault(_prefix(raw), []).append((raw, kind))
        for candidates in self._by_prefix.values():
            candidates.sort(key=lambda item: -len(item[0]))  # longest match first
        self._table = np.zeros(1 << (8 * _PREFIX_BYTES), dtype=bool)
        self._table[list(self._by_prefix)] = True

    def find(self, data: bytes | np.ndarray) -> list[tuple[int, int, str]]:
        """Non-overlapping matches ``(start, end, kind)`` in ``data``, left to right."""
        buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
        if len(buffer) < _PREFIX_BYTES or not self._by_prefix:
            return []
        index = np.zeros(len(buffer) - _PREFIX_BYTES + 1, dtype=np.int32)
        for shift in range(_PREFIX_BYTES):
            index = (index << 8) | buffer[shift : len(index) + shift]
        raw = buffer.tobytes()
        matches: list[tuple[int, int, str]] = []
        end = 0
        for start in np.flatnonzero(self._table[index]).tolist():
            if start < end:
                continue
            for identifier, kind in self._by_prefix[int(index[start])]:
                if raw.startswith(identifier, start):
                    end = start + len(identifier)
                    matches.append((start, end, kind))
                    break
        return matches

    def scan(self, data: bytes | np.ndarray) -> list[IdentifierHit]:
        counts = Counter(kind for _, _, kind in self.find(data))
        return [IdentifierHit(kind, n) for kind, n in sorted(counts.items())]

    def redact(self, text: str, replacement: str = "<redacted>") -> tuple[str, int]:
        """``text`` with every identifier replaced, and how many were."""
        raw = text.encode("utf-8")
        matches = self.find(raw)
        if not matches:
            return text, 0
        parts, cursor = [], 0
        for start, end, _ in matches:
            parts.append(raw[cursor:start])
            parts.append(replacement.encode())
            cursor = end
        parts.append(raw[cursor:])
        return b"".join(parts).decode("utf-8", errors="replace"), len(matches)


def _prefix(raw: bytes) -> int:
    """The first bytes of an identifier as the number the table is indexed by."""
    return int.from_bytes(raw[:_PREFIX_BYTES], "big")


def _arrangements(sequence: np.ndarray) -> list[np.ndarray]:
    """The orders a user's items are searched in: as they are, reversed, the even and
    the odd positions, and sorted (unique)."""
    seq = np.asarray(sequence)
    return [seq, seq[::-1], seq[0::2], seq[1::2], np.unique(seq)]


def _run_keys(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Sorted unique keys of every run of :data:`RUN` distinct items within one
    sequence, in each of its :func:`_arrangements`."""
    runs = [
        np.stack([seq[shift : len(seq) - RUN + 1 + shift] for shift in range(RUN)])
        for sequence in sequences
        for seq in _arrangements(sequence)
        if len(seq) >= RUN
    ]
    if not runs:
        return np.zeros(0, np.uint64)
    ids = np.concatenate(runs, axis=1).astype(np.uint64)
    return np.unique(_encode(ids[:, _distinct(ids)], n_items))


def _distinct(ids: np.ndarray) -> np.ndarray:
    """Which runs (columns of ``ids``) hold no item twice."""
    return np.all([ids[i] != ids[j] for i in range(RUN) for j in range(i + 1, RUN)], axis=0)


def _encode(ids: np.ndarray, n_items: int) -> np.ndarray:
    """One uint64 key per run (column of ``ids``): the run read as a number in base
    ``n_items`` (exact below 2.6 million items; beyond, it wraps around 2^64 and
    becomes a hash whose collisions are astronomically rare)."""
    base = np.uint64(max(n_items, 1))
    key = ids[0].copy()
    for row in ids[1:]:
        key = key * base + row
    return key


def _member(keys: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``np.isin(keys, known)`` for a sorted unique ``known``, without re-sorting it."""
    if len(known) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    index = np.minimum(np.searchsorted(known, keys), len(known) - 1)
    return known[index] == keys


def _merge_offsets(hits: list[SequenceHit]) -> list[SequenceHit]:
    """One hit per group and encoding (the same encoding at several offsets adds up)."""
    merged: dict[tuple[str, str], SequenceHit] = {}
    for hit in hits:
        key = (hit.group, hit.encoding)
        seen = merged.get(key)
        merged[key] = (
            hit
            if seen is None
            else SequenceHit(
                hit.group, hit.encoding, min(seen.offset, hit.offset), seen.runs + hit.runs
            )
        )
    return list(merged.values())
