"""MergeRec importer: hand-checked toy domains, every bad-input case, the real archives."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from silorec.data.domain import LOO_HOLDOUT
from silorec.data.errors import DataError
from silorec.data.importers.mergerec import MERGEREC_FILES, load_mergerec

TOY = {
    "train.json": {"0": [0, 1], "1": [2, 0, 1], "2": [3, 2]},
    "val.json": {"0": [2], "1": [3]},
    "test.json": {"0": [3], "1": [1]},
    "umap.json": {"alice": 0, "bob": 1, "carol": 2},
    "smap.json": {"A0": 0, "A1": 1, "A2": 2, "A3": 3},
    "meta_data.json": {
        "A0": {"title": "Zero", "brand": "B0", "category": "Cat Zero"},
        "A1": {"title": "One", "brand": "", "category": ["Toys", "Blocks"]},
        "A2": {"title": " Two ", "brand": "B2", "category": ""},
        "UNUSED": {"title": "not in smap", "brand": "", "category": ""},
    },
}


def write_folder(
    folder: Path, files: dict[str, object] | None = None, raw: dict[str, str] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in (files or TOY).items():
        (folder / name).write_text(json.dumps(content), encoding="utf-8")
    for name, text in (raw or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def write_archive(path: Path, domain: str = "Toy", files: dict[str, object] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, content in (files or TOY).items():
            blob = json.dumps(content).encode()
            info = tarfile.TarInfo(f"{domain}/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def test_toy_folder_sequences_holdout_and_text(tmp_path: Path) -> None:
    d = load_mergerec(write_folder(tmp_path / "Toy"), "toy")
    assert d.name == "toy"
    assert d.user_ids == ["alice", "bob", "carol"]
    assert [d.sequence(u).tolist() for u in range(3)] == [[0, 1, 2, 3], [2, 0, 1, 3, 1], [3, 2]]
    assert d.holdout.tolist() == [LOO_HOLDOUT, LOO_HOLDOUT, 0]  # carol has no val/test
    assert d.eval_case(0, "valid")[1] == 2 and d.eval_case(0, "test")[1] == 3
    assert d.train_sequence(2).tolist() == [3, 2]
    assert d.items.ids == ["A0", "A1", "A2", "A3"]
    assert d.items.fields["title"] == ["Zero", "One", "Two", ""]  # A3 has no metadata
    assert d.items.fields["category"] == ["Cat Zero", "Toys Blocks", "", ""]
    assert d.items.fields["brand"] == ["B0", "", "B2", ""]


def test_archive_equals_folder(tmp_path: Path) -> None:
    folder = load_mergerec(write_folder(tmp_path / "folder" / "Toy"), "toy")
    (tmp_path / "arch").mkdir()
    archive = load_mergerec(write_archive(tmp_path / "arch" / "Toy.tar.gz"), "toy")
    assert archive.user_ids == folder.user_ids
    assert np.array_equal(archive.flat_items, folder.flat_items)
    assert np.array_equal(archive.offsets, folder.offsets)
    assert archive.items == folder.items
    assert [p.name for p in (tmp_path / "arch").iterdir()] == ["Toy.tar.gz"]  # read in memory


def test_user_order_is_numeric_not_file_order(tmp_path: Path) -> None:
    files = dict(TOY, **{"train.json": {"2": [3, 2], "10": [1], "1": [2, 0, 1], "0": [0, 1]}})
    files["umap.json"] = {"alice": 0, "bob": 1, "carol": 2, "dave": 10}
    d = load_mergerec(write_folder(tmp_path / "T", files), "t")
    assert d.user_ids == ["alice", "bob", "carol", "dave"]


# -- bad input -----------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such MergeRec folder or archive"):
        load_mergerec(tmp_path / "Nope.tar.gz", "x")


def test_missing_file_in_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "Toy")
    (folder / "smap.json").unlink()
    with pytest.raises(DataError, match=r"Toy: not a MergeRec domain folder: missing smap\.json"):
        load_mergerec(folder, "x")


def test_missing_member_in_archive(tmp_path: Path) -> None:
    files = {k: v for k, v in TOY.items() if k != "test.json"}
    with pytest.raises(DataError, match=r"Toy\.tar\.gz: not a MergeRec archive: no test\.json"):
        load_mergerec(write_archive(tmp_path / "Toy.tar.gz", files=files), "x")


def test_not_an_archive(tmp_path: Path) -> None:
    bad = tmp_path / "Toy.tar.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match=r"Toy\.tar\.gz: not a readable tar archive"):
        load_mergerec(bad, "x")


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "Toy", raw={"val.json": '{\n "0": [2],\n "1": [3\n}'})
    with pytest.raises(DataError, match=r"Toy/val\.json: not valid JSON: .*line 4, column 1"):
        load_mergerec(folder, "x")


def test_malformed_json_in_archive_names_member(tmp_path: Path) -> None:
    archive = tmp_path / "Toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in MERGEREC_FILES:
            blob = b"{oops" if name == "umap.json" else json.dumps(TOY[name]).encode()
            info = tarfile.TarInfo(f"Toy/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    with pytest.raises(DataError, match=r"Toy\.tar\.gz:Toy/umap\.json: not valid JSON"):
        load_mergerec(archive, "x")


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("train.json", {"0": [0, 9]}, r"train\.json: user 0: item index 9 is outside 0\.\.3"),
        ("train.json", {"0": [0, -1]}, r"train\.json: user 0: item index -1 is outside"),
        ("train.json", {"0": [0, "1"]}, r"train\.json: user 0: item '1' is not an integer"),
        ("train.json", {"0": [0, 1.5]}, r"train\.json: user 0: item 1\.5 is not an integer"),
        ("train.json", {"x": [0]}, r"train\.json: user key 'x' is not an integer"),
        ("train.json", {"0": 3}, r"train\.json: user 0: expected a list"),
        ("train.json", [1, 2], r"train\.json: expected a JSON object at the top level"),
        (
            "val.json",
            {"0": [2, 1], "1": [3]},
            r"val\.json: user 0: expected exactly one item, got 2",
        ),
        ("test.json", {"0": [3]}, r"test\.json: user 1 has an item in val\.json but none here"),
        (
            "smap.json",
            {"A0": 0, "A1": 1, "A2": 2, "A3": 5},
            r"smap\.json: item indices must be exactly 0\.\.3",
        ),
        (
            "smap.json",
            {"A0": 0, "A1": 1, "A2": 1, "A3": 3},
            r"smap\.json: item index 1 is used by both 'A1' and 'A2'",
        ),
        (
            "smap.json",
            {"A0": 0, "A1": "1", "A2": 2, "A3": 3},
            r"smap\.json: product 'A1' maps to '1'",
        ),
        ("smap.json", {}, r"smap\.json: no items"),
        ("umap.json", {"alice": 0, "bob": 1}, r"umap\.json: no reviewer id for user 2"),
        (
            "umap.json",
            {"alice": 0, "bob": 0, "carol": 2},
            r"umap\.json: user index 0 is used by both",
        ),
        ("meta_data.json", {"A0": "oops"}, r"meta_data\.json: product 'A0': expected an object"),
    ],
)
def test_bad_content_names_file_and_problem(
    tmp_path: Path, file: str, content: object, message: str
) -> None:
    files = dict(TOY, **{file: content})
    with pytest.raises(DataError, match=message):
        load_mergerec(write_folder(tmp_path / "Toy", files), "x")


# -- the real MergeRec release -------------------------------------------------

README_TABLE = {
    # archive: (users, items, interactions, mean length)
    "Beauty": (22_363, 12_101, 198_502, 8.88),
    "Sports": (35_598, 18_357, 296_337, 8.32),
    "Toys": (19_412, 11_924, 167_597, 8.63),
    "Pantry": (14_180, 4_968, 137_769, 9.72),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("domain", list(README_TABLE))
def test_real_archive_matches_readme_table(amazon_dir: Path, domain: str) -> None:
    start = time.perf_counter()
    d = load_mergerec(amazon_dir / f"{domain}.tar.gz", domain.lower())
    seconds = time.perf_counter() - start
    users, items, interactions, mean_length = README_TABLE[domain]
    assert (d.n_users, d.n_items, d.n_interactions) == (users, items, interactions)
    assert round(float(d.lengths.mean()), 2) == mean_length
    assert seconds < 10, f"loading {domain} took {seconds:.1f} s"
    assert all(len(t) == d.n_items for t in d.items.fields.values())
    if domain == "Pantry":
        # Two users were published without val/test: they only train.
        short = np.flatnonzero(d.holdout == 0)
        assert len(short) == 2
        assert sum(t != "" for t in d.items.fields["category"]) == 0
    else:
        assert np.all(d.holdout == LOO_HOLDOUT)
        assert d.lengths.min() >= 5  # strict 5-core
        assert sum(t != "" for t in d.items.fields["title"]) > 0.9 * d.n_items
