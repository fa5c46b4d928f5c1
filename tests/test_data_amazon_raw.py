"""Raw UCSD Amazon files (2014 and 2018 line formats, plain or gzip)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from silorec.data.domain import LOO_HOLDOUT
from silorec.data.errors import DataError
from silorec.data.importers.amazon_raw import load_amazon_raw


def review(user: str, asin: str, t: int, rating: float = 5.0) -> dict:
    return {
        "reviewerID": user,
        "asin": asin,
        "overall": rating,
        "unixReviewTime": t,
        "reviewText": "fine",
        "summary": "ok",
    }


REVIEWS = [
    review("U1", "B3", 300),
    review("U2", "B1", 100, rating=2.0),
    review("U1", "B1", 100),
    review("U1", "B2", 200, rating=3.0),
    review("U1", "B3", 50),  # repeated (U1, B3): the earliest (50) wins
    review("U2", "B2", 150),
    review("U1", "B4", 400),
]

META_2014 = [
    "{'asin': 'B1', 'title': 'Lip Balm', 'brand': 'Burt', 'categories': [['Beauty', 'Lips'], ['Beauty', 'Gifts']]}",
    "{'asin': 'B2', 'title': \"Men's Soap\", 'categories': [['Beauty', 'Bath']], 'salesRank': {'Beauty': 12}}",
    "{'asin': 'B3', 'related': {'also_bought': ['B1']}}",
    "{'asin': 'UNUSED', 'title': 'Nobody bought me'}",
]

META_2018 = [
    {
        "asin": "B1",
        "title": "Lip Balm",
        "brand": "Burt",
        "category": ["Beauty", "Lips"],
        "main_cat": "All Beauty",
    },
    {"asin": "B2", "title": "Men's Soap", "brand": "", "category": [], "main_cat": "Bath Stuff"},
    {
        "asin": "B3",
        "title": "Pan",
        "category": [],
        "main_cat": '<img src="x.png" class="nav-categ">',
    },
    {"asin": "B4", "title": "Towel"},
    {"asin": "B1", "title": "DUPLICATE ENTRY"},
]


def write_lines(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def reviews_file(
    tmp_path: Path, rows: list[dict] = REVIEWS, *, gz: bool = False, name: str = "reviews.json"
) -> Path:
    return write_lines(tmp_path / name, [json.dumps(r) for r in rows], gz=gz)


@pytest.mark.parametrize("gz", [False, True])
def test_2014_format(tmp_path: Path, gz: bool) -> None:
    reviews = reviews_file(tmp_path, gz=gz)
    meta = write_lines(tmp_path / "meta.json", META_2014, gz=gz)
    d = load_amazon_raw(reviews, meta, "beauty")
    assert d.user_ids == ["U1", "U2"]
    assert d.items.ids == ["B3", "B1", "B2", "B4"]  # first appearance in the reviews file
    seqs = [[d.items.ids[i] for i in d.sequence(u)] for u in range(d.n_users)]
    assert seqs == [["B3", "B1", "B2", "B4"], ["B1", "B2"]]
    assert d.holdout.tolist() == [LOO_HOLDOUT, 0]
    f = d.items.fields
    assert f["title"] == ["", "Lip Balm", "Men's Soap", ""]  # B3 has no title, B4 no metadata
    assert f["brand"] == ["", "Burt", "", ""]
    assert f["category"] == ["", "Beauty Lips", "Beauty Bath", ""]  # first category path


def test_2018_format_and_gzip_detected_by_magic_not_suffix(tmp_path: Path) -> None:
    reviews = reviews_file(tmp_path, gz=True, name="reviews.json")  # gzip without .gz
    meta = write_lines(
        tmp_path / "meta.json.gz", [json.dumps(m) for m in META_2018]
    )  # plain with .gz
    d = load_amazon_raw(reviews, meta, "beauty")
    f = d.items.fields
    assert d.items.ids == ["B3", "B1", "B2", "B4"]
    assert f["title"] == ["Pan", "Lip Balm", "Men's Soap", "Towel"]  # first B1 entry wins
    assert f["category"] == ["", "Beauty Lips", "Bath Stuff", ""]  # main_cat fallback, HTML ignored


def test_min_rating_filters_before_deduplication(tmp_path: Path) -> None:
    rows = [
        review("U1", "B1", 1, rating=1.0),
        review("U1", "B1", 5, rating=5.0),
        review("U1", "B2", 3, rating=4.0),
        review("U1", "B3", 4, rating=2.0),
    ]
    d = load_amazon_raw(
        reviews_file(tmp_path, rows), write_lines(tmp_path / "m", META_2014), "x", min_rating=4
    )
    # The low-rated first review of B1 is gone, so the later 5-star one counts.
    assert [d.items.ids[i] for i in d.sequence(0)] == ["B2", "B1"]
    assert d.items.ids == ["B1", "B2"]


def test_python_literal_reviews_also_load(tmp_path: Path) -> None:
    lines = [repr(r) for r in REVIEWS]  # some 2014 dumps are Python literals throughout
    d = load_amazon_raw(
        write_lines(tmp_path / "r", lines), write_lines(tmp_path / "m", META_2014), "x"
    )
    assert d.n_interactions == 6


# -- bad input -----------------------------------------------------------------


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in REVIEWS[:2]] + ['{"reviewerID": "U9", "asin": ']
    with pytest.raises(
        DataError, match=r"reviews\.json, line 3: neither a JSON object nor a Python dict literal"
    ):
        load_amazon_raw(
            write_lines(tmp_path / "reviews.json", lines),
            write_lines(tmp_path / "m", META_2014),
            "x",
        )


def test_malformed_metadata_line_in_gzip(tmp_path: Path) -> None:
    meta = write_lines(
        tmp_path / "meta.json.gz", META_2014[:2] + ["{'asin': 'B3', 'title': 'x'"], gz=True
    )
    with pytest.raises(DataError, match=r"meta\.json\.gz, line 3: neither a JSON object"):
        load_amazon_raw(reviews_file(tmp_path), meta, "x")


def test_non_object_line(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"reviews\.json, line 1: expected one object per line, got list"
    ):
        load_amazon_raw(
            write_lines(tmp_path / "reviews.json", ["[1, 2]"]),
            write_lines(tmp_path / "m", META_2014),
            "x",
        )


@pytest.mark.parametrize("field", ["reviewerID", "asin", "unixReviewTime"])
def test_missing_field_names_file_line_and_field(tmp_path: Path, field: str) -> None:
    rows = [dict(r) for r in REVIEWS]
    del rows[3][field]
    with pytest.raises(DataError, match=rf"reviews\.json, line 4, field '{field}': missing"):
        load_amazon_raw(reviews_file(tmp_path, rows), write_lines(tmp_path / "m", META_2014), "x")


def test_missing_rating_only_matters_with_min_rating(tmp_path: Path) -> None:
    rows = [dict(r) for r in REVIEWS]
    del rows[0]["overall"]
    meta = write_lines(tmp_path / "m", META_2014)
    assert load_amazon_raw(reviews_file(tmp_path, rows), meta, "x").n_interactions == 6
    with pytest.raises(DataError, match=r"line 1, field 'overall': missing"):
        load_amazon_raw(reviews_file(tmp_path, rows), meta, "x", min_rating=3)


def test_bad_timestamp(tmp_path: Path) -> None:
    rows = [dict(r) for r in REVIEWS]
    rows[1]["unixReviewTime"] = "last week"
    with pytest.raises(
        DataError, match=r"line 2, field 'unixReviewTime': expected a unix timestamp"
    ):
        load_amazon_raw(reviews_file(tmp_path, rows), write_lines(tmp_path / "m", META_2014), "x")


def test_metadata_line_without_asin(tmp_path: Path) -> None:
    meta = write_lines(tmp_path / "meta.json", META_2014[:1] + ["{'title': 'orphan'}"])
    with pytest.raises(DataError, match=r"meta\.json, line 2, field 'asin': missing"):
        load_amazon_raw(reviews_file(tmp_path), meta, "x")


def test_missing_files(tmp_path: Path) -> None:
    meta = write_lines(tmp_path / "meta.json", META_2014)
    with pytest.raises(DataError, match=r"nope\.json: file not found"):
        load_amazon_raw(tmp_path / "nope.json", meta, "x")
    with pytest.raises(DataError, match=r"nometa\.json: file not found"):
        load_amazon_raw(reviews_file(tmp_path), tmp_path / "nometa.json", "x")


def test_corrupt_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(("\n".join(json.dumps(r) for r in REVIEWS) + "\n").encode())
    bad = tmp_path / "reviews.json.gz"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"reviews\.json\.gz, line \d+: corrupt gzip data"):
        load_amazon_raw(bad, write_lines(tmp_path / "m", META_2014), "x")


def test_nothing_left_after_min_rating(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"reviews\.json: no review has a rating of at least 6"):
        load_amazon_raw(
            reviews_file(tmp_path), write_lines(tmp_path / "m", META_2014), "x", min_rating=6
        )


def test_empty_reviews_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"reviews\.json: no reviews"):
        load_amazon_raw(
            write_lines(tmp_path / "reviews.json", [""]),
            write_lines(tmp_path / "m", META_2014),
            "x",
        )
