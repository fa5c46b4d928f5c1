"""Item-text embeddings, computed once and cached by content.

The key is a SHA-256 over the encoder's name and every text (each length-prefixed,
so no two different lists of texts hash alike). Embeddings live in
``<cache_dir>/embeddings/<key>.npy``, written atomically (temporary file +
``os.replace``), so a crash never leaves a partial file under the final name; a file
that cannot be read or has the wrong shape is recomputed. An in-process memo makes
repeated calls in one process free.

The caller chooses the folder (a node passes its prepared-data cache folder, see
:func:`silorec.data.cache.resolve_cache_dir`); this module deliberately does not import
:mod:`silorec.data`, so that code importable by the merge server never pulls in
interaction readers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from silorec.text.encoders import TextEncoder

_KEY_VERSION = b"silorec-text-embeddings-v1"
#: Catalogues kept in the in-process memo (least recently used ones are dropped).
MEMO_SIZE = 16
_STALE_TMP_S = 3600.0

_memo: OrderedDict[str, np.ndarray] = OrderedDict()
_memo_lock = threading.Lock()


def _len_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def embedding_key(texts: list[str], encoder_name: str) -> str:
    """Content hash of ``(encoder_name, texts)``; any change in either changes it."""
    h = hashlib.sha256()
    h.update(_len_prefixed(_KEY_VERSION))
    h.update(_len_prefixed(encoder_name.encode("utf-8")))
    h.update(len(texts).to_bytes(8, "little"))
    for text in texts:
        h.update(_len_prefixed(text.encode("utf-8", "surrogatepass")))
    return h.hexdigest()


def embedding_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / "embeddings" / f"{key}.npy"


def _valid(arr: object, n: int, dim: int) -> bool:
    return (
        isinstance(arr, np.ndarray)
        and arr.dtype == np.float32
        and arr.shape == (n, dim)
        and bool(np.isfinite(arr).all())
    )


def _load(path: Path, n: int, dim: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError):
        return None  # corrupt or truncated: recompute and overwrite
    return arr if _valid(arr, n, dim) else None


def _clean_stale_tmp(folder: Path) -> None:
    """Remove temporary files left by writers killed mid-write (older than an hour)."""
    cutoff = time.time() - _STALE_TMP_S
    for tmp in folder.glob(".*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _remember(key: str, arr: np.ndarray) -> None:
    with _memo_lock:
        _memo[key] = arr
        _memo.move_to_end(key)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)


def clear_memo() -> None:
    """Forget the in-process memo (tests; the disk cache is untouched)."""
    with _memo_lock:
        _memo.clear()


def embed_texts(texts: list[str], encoder: TextEncoder, cache_dir: Path | None) -> np.ndarray:
    """``float32 [len(texts), encoder.dim]`` embeddings of ``texts``.

    Looked up in the in-process memo, then in ``cache_dir`` (``None``: no disk
    cache), and computed with ``encoder`` only when both miss. Returns a fresh array
    the caller may modify.
    """
    texts = list(texts)
    n, dim = len(texts), int(encoder.dim)
    key = embedding_key(texts, encoder.name)
    with _memo_lock:
        hit = _memo.get(key)
        if hit is not None:
            _memo.move_to_end(key)
    if hit is not None and _valid(hit, n, dim):
        return hit.copy()

    path = embedding_path(cache_dir, key) if cache_dir is not None else None
    arr = _load(path, n, dim) if path is not None else None
    if arr is None:
        arr = np.ascontiguousarray(encoder.encode(texts), dtype=np.float32)
        if not _valid(arr, n, dim):
            raise ValueError(
                f"text encoder '{encoder.name}' returned shape {getattr(arr, 'shape', None)} "
                f"(expected {(n, dim)}) or non-finite values"
            )
        if path is not None:
            _save_atomic(path, arr)
    arr.setflags(write=False)
    _remember(key, arr)
    return arr.copy()
