"""prepare_domain: path resolution, helpful not-found errors, caching, subsampling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from silorec.data import cache as cache_mod
from silorec.data.errors import DataError
from silorec.data.prepare import PreparedDomain, prepare_domain
from silorec.scenario import DataSettings, DomainSpec

MERGEREC = {
    "train.json": {"0": [0, 1, 2], "1": [1, 2], "2": [0, 3]},
    "val.json": {"0": [3], "1": [0], "2": [1]},
    "test.json": {"0": [1], "1": [3], "2": [2]},
    "umap.json": {"r0": 0, "r1": 1, "r2": 2},
    "smap.json": {"P0": 0, "P1": 1, "P2": 2, "P3": 3},
    "meta_data.json": {"P0": {"title": "zero", "brand": "", "category": ""}},
}


def write_mergerec(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in MERGEREC.items():
        (folder / name).write_text(json.dumps(content), encoding="utf-8")
    return folder


def write_generic(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_text(
        "user_id,item_id,timestamp\na,x,1\na,y,2\na,z,3\nb,x,1\n"
    )
    (folder / "items.csv").write_text("item_id,title\nx,X\ny,Y\nz,Z\n")
    return folder


def spec(data: dict, subsample: dict | None = None, name: str = "dom") -> DomainSpec:
    return DomainSpec.model_validate({"name": name, "data": data, "subsample": subsample or {}})


def test_cache_hit_then_rebuild_after_corruption(tmp_path: Path) -> None:
    write_mergerec(tmp_path / "Dom")
    s = spec({"kind": "mergerec", "path": "Dom"})
    cache = tmp_path / "cache"
    first = prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=cache)
    assert isinstance(first, PreparedDomain) and not first.from_cache
    assert first.stats.users == 3 and first.stats.interactions == 13 and first.name == "dom"
    assert first.cache_path is not None and first.cache_path.parent == cache / "domains"
    second = prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=cache)
    assert second.from_cache and second.cache_path == first.cache_path
    assert second.stats == first.stats and second.raw_stats == first.raw_stats
    assert np.array_equal(second.domain.flat_items, first.domain.flat_items)
    assert second.domain.items == first.domain.items
    (first.cache_path / "sequences.npz").write_bytes(b"garbage")
    third = prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=cache)
    assert not third.from_cache and np.array_equal(third.domain.flat_items, first.domain.flat_items)
    assert prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=cache).from_cache


def test_changed_input_or_settings_miss_the_cache(tmp_path: Path) -> None:
    folder = write_mergerec(tmp_path / "Dom")
    cache = tmp_path / "cache"
    s = spec({"kind": "mergerec", "path": "Dom"})
    prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=cache)
    sub = spec({"kind": "mergerec", "path": "Dom"}, {"max_users": 2})
    assert not prepare_domain(sub, DataSettings(), base_dir=tmp_path, cache_dir=cache).from_cache
    st = (folder / "train.json").stat()
    os.utime(folder / "train.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=cache).from_cache
    assert len(list((cache / "domains").iterdir())) == 3


def test_use_cache_false_writes_nothing(tmp_path: Path) -> None:
    write_mergerec(tmp_path / "Dom")
    p = prepare_domain(
        spec({"kind": "mergerec", "path": "Dom"}),
        DataSettings(),
        base_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        use_cache=False,
    )
    assert not p.from_cache and p.cache_path is None and not (tmp_path / "cache").exists()


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mergerec(tmp_path / "Dom")
    s = spec({"kind": "mergerec", "path": "Dom"})
    monkeypatch.setenv("SILOREC_CACHE_DIR", str(tmp_path / "env"))
    p = prepare_domain(s, DataSettings(), base_dir=tmp_path)
    assert p.cache_path.parent.parent == tmp_path / "env"
    p = prepare_domain(s, DataSettings(cache_dir="scen"), base_dir=tmp_path)
    assert p.cache_path.parent.parent == tmp_path / "scen"  # relative to base_dir
    p = prepare_domain(
        s, DataSettings(cache_dir="scen"), base_dir=tmp_path, cache_dir=tmp_path / "arg"
    )
    assert p.cache_path.parent.parent == tmp_path / "arg"


def test_failed_cache_write_still_prepares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_mergerec(tmp_path / "Dom")

    def boom(*args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(cache_mod.np, "savez", boom)
    p = prepare_domain(
        spec({"kind": "mergerec", "path": "Dom"}),
        DataSettings(),
        base_dir=tmp_path,
        cache_dir=tmp_path / "cache",
    )
    assert p.stats.users == 3 and p.cache_path is None
    assert "could not write the prepared-data cache" in caplog.text
    assert list((tmp_path / "cache" / "domains").iterdir()) == []


def test_subsampling_is_applied_and_raw_stats_kept(tmp_path: Path) -> None:
    write_mergerec(tmp_path / "Dom")
    p = prepare_domain(
        spec({"kind": "mergerec", "path": "Dom"}, {"max_users": 1, "seed": 0}),
        DataSettings(),
        base_dir=tmp_path,
        cache_dir=tmp_path / "c",
    )
    assert p.raw_stats.users == 3 and p.stats.users == 1
    assert p.domain.n_users == 1


# -- where the data is looked for ---------------------------------------------


def test_root_env_wins_over_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mergerec(tmp_path / "env_root" / "Dom")
    settings = DataSettings(root=str(tmp_path / "elsewhere"), root_env="MY_DATA")
    monkeypatch.setenv("MY_DATA", str(tmp_path / "env_root"))
    p = prepare_domain(
        spec({"kind": "mergerec", "path": "Dom"}), settings, cache_dir=tmp_path / "c"
    )
    assert str(tmp_path / "env_root" / "Dom") in p.source
    monkeypatch.setenv("MY_DATA", "")  # empty counts as unset: data.root is used
    with pytest.raises(DataError, match=r"elsewhere/Dom"):
        prepare_domain(
            spec({"kind": "mergerec", "path": "Dom"}), settings, cache_dir=tmp_path / "c"
        )


def test_relative_root_resolves_against_base_dir(tmp_path: Path) -> None:
    write_mergerec(tmp_path / "scen" / "data" / "Dom")
    p = prepare_domain(
        spec({"kind": "mergerec", "path": "Dom"}),
        DataSettings(root="data"),
        base_dir=tmp_path / "scen",
        cache_dir=tmp_path / "c",
    )
    assert p.stats.users == 3


def test_data_dir_override(tmp_path: Path) -> None:
    write_mergerec(tmp_path / "node" / "Mine")
    s = spec({"kind": "mergerec", "path": "does/not/exist/Dom"})
    p = prepare_domain(
        s, DataSettings(), data_dir=tmp_path / "node" / "Mine", cache_dir=tmp_path / "c"
    )
    assert p.stats.users == 3
    # A folder holding the archive/folder named by the source also works.
    write_mergerec(tmp_path / "shelf" / "Dom")
    p = prepare_domain(s, DataSettings(), data_dir=tmp_path / "shelf", cache_dir=tmp_path / "c")
    assert str(tmp_path / "shelf" / "Dom") in p.source


def test_generic_source_and_override(tmp_path: Path) -> None:
    write_generic(tmp_path / "logs")
    s = spec({"kind": "generic", "path": "logs"})
    p = prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=tmp_path / "c")
    assert (p.stats.users, p.stats.items, p.stats.evaluable_users) == (2, 3, 1)
    p = prepare_domain(
        spec({"kind": "generic", "path": "nowhere"}),
        DataSettings(),
        data_dir=tmp_path / "logs",
        cache_dir=tmp_path / "c",
    )
    assert p.stats.users == 2
    (tmp_path / "logs" / "items.csv").unlink()
    with pytest.raises(DataError, match=r"domain 'dom': data not found at .*logs/items\.csv"):
        prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=tmp_path / "c")


def test_amazon_raw_source_and_override(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    rows = [
        {"reviewerID": "U", "asin": a, "overall": 5.0, "unixReviewTime": t}
        for t, a in enumerate("ABC")
    ]
    (folder / "reviews.json").write_text("\n".join(json.dumps(r) for r in rows))
    (folder / "meta.json").write_text("{'asin': 'A', 'title': 'a'}\n")
    s = spec({"kind": "amazon-raw", "reviews": "raw/reviews.json", "metadata": "raw/meta.json"})
    p = prepare_domain(s, DataSettings(), base_dir=tmp_path, cache_dir=tmp_path / "c")
    assert p.stats.interactions == 3 and p.domain.items.fields["title"] == ["a", "", ""]
    p = prepare_domain(s, DataSettings(), data_dir=folder, cache_dir=tmp_path / "c2")
    assert p.stats.interactions == 3


def test_not_found_names_domain_path_env_and_how_to_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SILOREC_TEST_DATA", raising=False)
    settings = DataSettings(
        root_env="SILOREC_TEST_DATA", how_to_get="Download it from example.org."
    )
    with pytest.raises(DataError) as exc:
        prepare_domain(
            spec({"kind": "mergerec", "path": "Beauty.tar.gz"}, name="beauty"),
            settings,
            base_dir=tmp_path,
            cache_dir=tmp_path / "c",
        )
    message = str(exc.value)
    assert "domain 'beauty'" in message
    assert str(tmp_path / "Beauty.tar.gz") in message
    assert "$SILOREC_TEST_DATA (now not set)" in message
    assert "Download it from example.org." in message
    assert "\n" not in message


def test_incomplete_mergerec_folder_names_missing_file(tmp_path: Path) -> None:
    (write_mergerec(tmp_path / "Dom") / "umap.json").unlink()
    with pytest.raises(DataError, match=r"Dom: not a MergeRec domain folder: missing umap\.json"):
        prepare_domain(
            spec({"kind": "mergerec", "path": "Dom"}),
            DataSettings(),
            base_dir=tmp_path,
            cache_dir=tmp_path / "c",
        )


def test_not_found_with_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data not found at .*nowhere \(the node's data-dir\)"):
        prepare_domain(
            spec({"kind": "mergerec", "path": "Dom"}),
            DataSettings(),
            data_dir=tmp_path / "nowhere",
            cache_dir=tmp_path / "c",
        )


# -- synthetic and real data -----------------------------------------------------


def test_synthetic_domain(tmp_path: Path) -> None:
    pytest.importorskip("silorec.data.synthetic")
    s = spec({"kind": "synthetic", "n_users": 30, "n_items": 20, "seed": 1}, name="books")
    a = prepare_domain(s, DataSettings(), cache_dir=tmp_path / "c")
    b = prepare_domain(s, DataSettings(), cache_dir=tmp_path / "c")
    assert not a.from_cache and b.from_cache
    assert a.domain.name == "books" and a.stats.users == 30
    assert np.array_equal(a.domain.flat_items, b.domain.flat_items)


@pytest.mark.shared_data
def test_real_domain_prepares_once(amazon_dir: Path, tmp_path: Path) -> None:
    s = spec(
        {"kind": "mergerec", "path": "Beauty.tar.gz"},
        {"top_items": 2000, "k_core": 5, "max_users": 6000},
        name="beauty",
    )
    settings = DataSettings(root=str(amazon_dir))
    first = prepare_domain(s, settings, cache_dir=tmp_path / "c")
    assert (first.raw_stats.users, first.raw_stats.items, first.raw_stats.interactions) == (
        22_363,
        12_101,
        198_502,
    )
    assert first.stats.users == 6000 and first.stats.items <= 2000
    second = prepare_domain(s, settings, cache_dir=tmp_path / "c")
    assert second.from_cache and second.seconds < first.seconds
    assert second.domain.user_ids == first.domain.user_ids
