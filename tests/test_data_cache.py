"""Prepared-data cache: round trip, keys, corrupt entries, atomic writes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from silorec.data import cache as cache_mod
from silorec.data.cache import (
    CACHE_FORMAT_VERSION,
    cache_key,
    default_cache_dir,
    entry_dir,
    file_fingerprint,
    load_cached,
    resolve_cache_dir,
    store,
)
from silorec.data.domain import DomainData, ItemCatalogue
from silorec.data.stats import domain_stats

KEY = "ab" * 32


def toy() -> DomainData:
    return DomainData(
        name="toy",
        items=ItemCatalogue(
            ids=["a", "b", "c"], fields={"title": ["Ä", "B", ""], "brand": ["x", "", "z"]}
        ),
        user_ids=["u1", "u2"],
        offsets=[0, 4, 6],
        flat_items=[0, 1, 2, 1, 2, 0],
        holdout=[2, 0],
    )


def put(cache_dir: Path, key: str = KEY) -> Path:
    d = toy()
    return store(
        cache_dir, key, d, raw_stats=domain_stats(d), stats=domain_stats(d), meta={"source": "test"}
    )


def test_round_trip_and_layout(tmp_path: Path) -> None:
    path = put(tmp_path)
    assert path == tmp_path / "domains" / KEY
    assert sorted(p.name for p in path.iterdir()) == [
        "items.json",
        "meta.json",
        "sequences.npz",
        "users.json",
    ]
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == CACHE_FORMAT_VERSION and meta["key"] == KEY
    assert meta["name"] == "toy" and meta["source"] == "test" and meta["stats"]["interactions"] == 6
    assert "created" in meta
    got = load_cached(tmp_path, KEY)
    assert got is not None
    d = got.domain
    ref = toy()
    assert d.items == ref.items and d.user_ids == ref.user_ids and d.name == "toy"
    assert np.array_equal(d.offsets, ref.offsets) and np.array_equal(d.flat_items, ref.flat_items)
    assert np.array_equal(d.holdout, ref.holdout)
    assert got.stats == domain_stats(ref) == got.raw_stats


def test_absent_entry(tmp_path: Path) -> None:
    assert load_cached(tmp_path, KEY) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: (p / "sequences.npz").write_bytes(b"not a zip"),
        lambda p: (p / "sequences.npz").write_bytes((p / "sequences.npz").read_bytes()[:40]),
        lambda p: (p / "items.json").unlink(),
        lambda p: (p / "users.json").write_text('["u1"]'),
        lambda p: (p / "meta.json").write_text("{"),
        lambda p: (p / "meta.json").write_text(json.dumps({"format_version": 0})),
        lambda p: (p / "items.json").write_text(json.dumps({"ids": ["a"], "fields": {}})),
    ],
    ids=[
        "npz-garbage",
        "npz-truncated",
        "items-missing",
        "users-short",
        "meta-garbage",
        "old-format",
        "items-short",
    ],
)
def test_corrupt_entry_is_removed_not_crashed_on(tmp_path: Path, damage) -> None:
    path = put(tmp_path)
    damage(path)
    assert load_cached(tmp_path, KEY) is None
    assert not path.exists()
    put(tmp_path)
    assert load_cached(tmp_path, KEY) is not None


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        put(tmp_path)
    assert list((tmp_path / "domains").iterdir()) == []


def test_failed_write_late_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_rename = os.rename

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        put(tmp_path)
    monkeypatch.setattr(cache_mod.os, "rename", real_rename)
    assert list((tmp_path / "domains").iterdir()) == []


def test_existing_valid_entry_wins_a_race(tmp_path: Path) -> None:
    first = put(tmp_path)
    stamp = (first / "meta.json").stat().st_mtime_ns
    assert put(tmp_path) == first  # rename onto a full folder fails: keep the valid one
    assert (first / "meta.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "domains").iterdir()] == [KEY]


def test_stale_temporary_folders_are_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / "domains" / ".tmp-dead-1"
    fresh = tmp_path / "domains" / ".tmp-live-2"
    stale.mkdir(parents=True)
    fresh.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    put(tmp_path)
    assert not stale.exists() and fresh.exists()


def test_key_depends_on_every_input(tmp_path: Path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("x")
    files = file_fingerprint([f])
    base = cache_key("a", {"kind": "generic"}, {"k_core": None}, files)
    assert len(base) == 64 and base == cache_key("a", {"kind": "generic"}, {"k_core": None}, files)
    assert base != cache_key("b", {"kind": "generic"}, {"k_core": None}, files)
    assert base != cache_key("a", {"kind": "generic", "path": "x"}, {"k_core": None}, files)
    assert base != cache_key("a", {"kind": "generic"}, {"k_core": 5}, files)
    f.write_text("xy")  # size and mtime change
    assert base != cache_key("a", {"kind": "generic"}, {"k_core": None}, file_fingerprint([f]))
    assert files[0]["path"] == str(f.resolve()) and set(files[0]) == {"path", "size", "mtime_ns"}


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SILOREC_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.setenv("SILOREC_CACHE_DIR", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "silorec"
    monkeypatch.delenv("SILOREC_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "silorec"


def test_resolve_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SILOREC_CACHE_DIR", str(tmp_path / "env"))
    assert resolve_cache_dir(None) == tmp_path / "env"
    assert resolve_cache_dir("") == tmp_path / "env"
    assert resolve_cache_dir(str(tmp_path / "abs")) == tmp_path / "abs"
    assert resolve_cache_dir("rel", base_dir=tmp_path) == tmp_path / "rel"
    assert entry_dir(tmp_path, "k") == tmp_path / "domains" / "k"
