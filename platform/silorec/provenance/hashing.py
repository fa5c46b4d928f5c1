"""Content hashes that identify what a merge was made from.

A weights hash covers every tensor's name, dtype, shape and bytes, in name order, so
it does not depend on the file format (``.npz`` in a run, ``.safetensors`` in an
export) or on the order a dict happens to hold: the same numbers give the same hash,
one changed bit gives another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def weights_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of a set of weights (names, dtypes, shapes and little-endian bytes)."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    """SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of named arrays of any dtype (catalogue embeddings and the like)."""
    return weights_sha256(arrays)
