"""On-disk cache of prepared domains, so that importing and subsampling run once.

Layout (documented in ``docs/data-formats.md``)::

    <cache_dir>/domains/<key>/
        sequences.npz   offsets (int64), flat_items (int32), holdout (int8)
        items.json      {"ids": [...], "fields": {"title": [...], ...}}
        users.json      [user id, ...]
        meta.json       format version, key, name, source, stats, created, ...

``key`` is the sha256 of the cache format version, the domain name, the data source
and subsample settings (JSON) and a fingerprint (path, size, mtime_ns) of every input
file, so that editing the scenario or touching the data makes a new entry. An entry is
written into a temporary folder beside it and renamed into place, so a reader never
sees half an entry; an entry that fails to load (corrupt, partial, older format) is
removed and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from silorec.data.domain import DomainData, ItemCatalogue
from silorec.data.stats import DomainStats

log = logging.getLogger(__name__)

#: Bump when the layout or the meaning of a cached entry changes.
CACHE_FORMAT_VERSION = 1
CACHE_ENV = "SILOREC_CACHE_DIR"
DOMAINS_SUBDIR = "domains"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0


def default_cache_dir() -> Path:
    """``$SILOREC_CACHE_DIR`` when set and non-empty, else ``~/.cache/silorec``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(os.path.expanduser(env))
    return Path.home() / ".cache" / "silorec"


def resolve_cache_dir(configured: str | Path | None, base_dir: Path | None = None) -> Path:
    """The cache folder: ``configured`` (the scenario's ``data.cache_dir``; relative
    paths resolve against ``base_dir``, else the working directory) when set, else
    :func:`default_cache_dir`."""
    if configured is None or str(configured).strip() == "":
        return default_cache_dir()
    path = Path(os.path.expanduser(str(configured)))
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path


def file_fingerprint(paths: list[Path]) -> list[dict[str, Any]]:
    """``[{path, size, mtime_ns}]`` of each input file (absolute paths)."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append({"path": str(Path(p).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def cache_key(
    name: str, source: dict[str, Any], subsample: dict[str, Any], files: list[dict[str, Any]]
) -> str:
    """The sha256 (hex) naming a cache entry."""
    blob = json.dumps(
        {
            "format_version": CACHE_FORMAT_VERSION,
            "name": name,
            "source": source,
            "subsample": subsample,
            "files": files,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def entry_dir(cache_dir: Path, key: str) -> Path:
    """Where the entry ``key`` lives."""
    return Path(cache_dir) / DOMAINS_SUBDIR / key


@dataclass
class CachedDomain:
    """A cache entry read back."""

    domain: DomainData
    raw_stats: DomainStats
    stats: DomainStats
    meta: dict[str, Any]
    path: Path


def _read_entry(path: Path, key: str) -> CachedDomain:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    if meta.get("format_version") != CACHE_FORMAT_VERSION:
        raise ValueError(f"format version {meta.get('format_version')!r}")
    if meta.get("key") != key:
        raise ValueError("key mismatch")
    with np.load(path / "sequences.npz", allow_pickle=False) as npz:
        offsets, flat, holdout = npz["offsets"], npz["flat_items"], npz["holdout"]
    items = json.loads((path / "items.json").read_text(encoding="utf-8"))
    users = json.loads((path / "users.json").read_text(encoding="utf-8"))
    if not isinstance(items, dict) or not isinstance(users, list):
        raise ValueError("items.json/users.json have the wrong shape")
    domain = DomainData(
        name=meta["name"],
        items=ItemCatalogue(ids=list(items["ids"]), fields=dict(items["fields"])),
        user_ids=users,
        offsets=offsets,
        flat_items=flat,
        holdout=holdout,
    )
    stats = DomainStats.from_dict(meta["stats"])
    if (stats.users, stats.items, stats.interactions) != (
        domain.n_users,
        domain.n_items,
        domain.n_interactions,
    ):
        raise ValueError("sizes differ from meta.json")
    return CachedDomain(
        domain=domain,
        raw_stats=DomainStats.from_dict(meta["raw_stats"]),
        stats=stats,
        meta=meta,
        path=path,
    )


def load_cached(cache_dir: Path, key: str) -> CachedDomain | None:
    """The entry ``key``, or ``None`` when there is none. A corrupt or partial entry
    is removed (so that it gets rebuilt) and reported as ``None``."""
    path = entry_dir(cache_dir, key)
    if not path.is_dir():
        return None
    try:
        return _read_entry(path, key)
    except Exception as exc:  # any failure to read back means: rebuild it
        log.warning("prepared-data cache entry %s is unusable (%s); rebuilding it", path, exc)
        shutil.rmtree(path, ignore_errors=True)
        return None


def _clean_stale_tmp(domains: Path) -> None:
    """Remove temporary folders left by crashed writers (older than an hour)."""
    now = time.time()
    try:
        candidates = list(domains.glob(_TMP_PREFIX + "*"))
    except OSError:
        return
    for tmp in candidates:
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def store(
    cache_dir: Path,
    key: str,
    domain: DomainData,
    *,
    raw_stats: DomainStats,
    stats: DomainStats,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the entry ``key`` atomically and return its folder.

    Everything is written into a temporary folder that is renamed into place at the
    end; on any failure the temporary folder is removed and the error re-raised.
    """
    domains = Path(cache_dir) / DOMAINS_SUBDIR
    domains.mkdir(parents=True, exist_ok=True)
    _clean_stale_tmp(domains)
    final = domains / key
    tmp = domains / f"{_TMP_PREFIX}{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        np.savez(
            tmp / "sequences.npz",
            offsets=domain.offsets,
            flat_items=domain.flat_items,
            holdout=domain.holdout,
        )
        (tmp / "items.json").write_text(
            json.dumps(
                {"ids": domain.items.ids, "fields": domain.items.fields}, ensure_ascii=False
            ),
            encoding="utf-8",
        )
        (tmp / "users.json").write_text(
            json.dumps(domain.user_ids, ensure_ascii=False), encoding="utf-8"
        )
        full_meta = {
            **(meta or {}),
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "name": domain.name,
            "raw_stats": raw_stats.to_dict(),
            "stats": stats.to_dict(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (tmp / "meta.json").write_text(
            json.dumps(full_meta, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        try:
            os.rename(tmp, final)
        except OSError:
            # Another writer won the race, or a broken entry sits there.
            if load_cached(cache_dir, key) is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
