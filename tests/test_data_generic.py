"""Generic CSV/Parquet importer: ordering, duplicates, catalogue, timestamps, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from silorec.data.domain import LOO_HOLDOUT, NO_TEXT
from silorec.data.errors import DataError
from silorec.data.importers.generic import load_generic
from silorec.scenario import GenericSource

INTERACTIONS = """user_id,item_id,timestamp
u1,i3,300
u2,i1,100
u1,i1,100
u1,i2,200
u1,i2,200
u2,i2,100
u1,i4,200
u3,i1,50
"""
ITEMS = """item_id,title,brand,category
i1,Red Kettle,Acme,Kitchen
i2,Blue Mug,,Kitchen
i9,Never Bought,Acme,Garden
i3,Green Pan,Panco,
i4,Tea Towel,Acme,Kitchen
"""


def write(
    folder: Path,
    interactions: str = INTERACTIONS,
    items: str = ITEMS,
    names: tuple[str, str] = ("interactions.csv", "items.csv"),
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / names[0]).write_text(interactions, encoding="utf-8")
    (folder / names[1]).write_text(items, encoding="utf-8")
    return folder


def test_hand_checked_toy(tmp_path: Path) -> None:
    d = load_generic(write(tmp_path), GenericSource(), "kitchen")
    assert d.user_ids == ["u1", "u2", "u3"]  # first appearance
    # Catalogue: interacted items in items-table order; i9 dropped.
    assert d.items.ids == ["i1", "i2", "i3", "i4"]
    assert d.items.fields["title"] == ["Red Kettle", "Blue Mug", "Green Pan", "Tea Towel"]
    assert d.items.fields["brand"] == ["Acme", "", "Panco", "Acme"]
    # u1: i1@100, then the tie at 200 keeps file order (i2 before i4), duplicate i2 dropped.
    names = [[d.items.ids[i] for i in d.sequence(u)] for u in range(d.n_users)]
    assert names == [["i1", "i2", "i4", "i3"], ["i1", "i2"], ["i1"]]
    assert d.holdout.tolist() == [LOO_HOLDOUT, 0, 0]
    assert d.n_interactions == 7


def test_same_item_at_different_times_is_kept(tmp_path: Path) -> None:
    inter = "user_id,item_id,timestamp\na,i1,1\na,i1,2\na,i2,3\n"
    d = load_generic(write(tmp_path, inter), GenericSource(), "x")
    assert [d.items.ids[i] for i in d.sequence(0)] == ["i1", "i1", "i2"]


def test_iso_timestamps_order_by_instant(tmp_path: Path) -> None:
    inter = (
        "user_id,item_id,timestamp\n"
        "a,i1,2021-03-01T12:00:00Z\n"
        "a,i2,2021-03-01\n"
        "a,i3,2021-03-01T13:00:00+02:00\n"  # 11:00 UTC: between i2 and i1
    )
    d = load_generic(write(tmp_path, inter), GenericSource(), "x")
    assert [d.items.ids[i] for i in d.sequence(0)] == ["i2", "i3", "i1"]


def test_custom_columns_and_files(tmp_path: Path) -> None:
    inter = "who\twhat\twhen\nx\t7\t2\nx\t07\t1\n"
    items = "what\tname\n7\tSeven\n07\tZero seven\n"  # item_column names both tables
    folder = write(tmp_path, inter, items, names=("log.tsv", "catalogue.tsv"))
    source = GenericSource(
        interactions="log.tsv",
        items="catalogue.tsv",
        user_column="who",
        item_column="what",
        timestamp_column="when",
        text_columns=["name"],
    )
    d = load_generic(folder, source, "x")
    assert d.items.ids == ["7", "07"]  # ids stay strings: leading zeros matter
    assert [d.items.ids[i] for i in d.sequence(0)] == ["07", "7"]
    assert d.items.fields == {"name": ["Seven", "Zero seven"]}


def test_parquet_tables(tmp_path: Path) -> None:
    pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "item_id": [10, 11, 12, 10],
            "timestamp": pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02", "2020-01-01"]),
        }
    ).to_parquet(tmp_path / "interactions.parquet")
    pd.DataFrame({"item_id": [12, 11, 10], "title": ["c", "b", None]}).to_parquet(
        tmp_path / "items.parquet"
    )
    source = GenericSource(
        interactions="interactions.parquet", items="items.parquet", text_columns=["title"]
    )
    d = load_generic(tmp_path, source, "x")
    assert d.user_ids == ["1", "2"]
    assert d.items.ids == ["12", "11", "10"]
    assert d.items.fields["title"] == ["c", "b", ""]
    assert [d.items.ids[i] for i in d.sequence(0)] == ["11", "12", "10"]
    assert d.holdout.tolist() == [LOO_HOLDOUT, 0]


def test_missing_text_column_is_empty_when_others_exist(tmp_path: Path) -> None:
    items = "item_id,title\ni1,a\ni2,b\ni3,c\ni4,d\n"
    d = load_generic(write(tmp_path, items=items), GenericSource(), "x")
    assert d.items.fields["brand"] == [""] * 4
    assert d.items.fields["title"] == ["a", "b", "c", "d"]


def test_item_texts_name_fields_and_never_fall_back_to_the_identifier(tmp_path: Path) -> None:
    items = "item_id,title,brand\nsecret-id-1,Kettle,Acme\nsecret-id-2,,\n"
    inter = "user_id,item_id,timestamp\nu1,secret-id-1,1\nu1,secret-id-2,2\n"
    d = load_generic(write(tmp_path, inter, items), GenericSource(), "x")
    by_id = dict(zip(d.items.ids, d.items.texts(["title", "brand", "category"]), strict=True))
    assert by_id["secret-id-1"] == "Kettle. Brand: Acme"
    # Texts feed what leaves the node: a textless item must not carry its raw id.
    assert by_id["secret-id-2"] == NO_TEXT
    assert "secret" not in NO_TEXT


def test_excel_style_csv_with_byte_order_mark(tmp_path: Path) -> None:
    folder = write(tmp_path)
    path = folder / "interactions.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_generic(folder, GenericSource(), "x").n_interactions == 7


def test_ragged_csv_line_names_the_line(tmp_path: Path) -> None:
    inter = "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2,extra\n"
    with pytest.raises(DataError, match=r"interactions\.csv: cannot read as CSV: .*line 3"):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


# -- bad input -----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "items.csv").unlink()
    with pytest.raises(DataError, match=r"items\.csv: file not found"):
        load_generic(tmp_path, GenericSource(), "x")


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    inter = "user_id,item,timestamp\nu1,i1,1\n"
    with pytest.raises(
        DataError,
        match=r"interactions\.csv: missing column 'item_id' \(columns found: 'user_id', 'item', 'timestamp'\)",
    ):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


def test_unknown_items_name_items_file_and_ids(tmp_path: Path) -> None:
    inter = INTERACTIONS + "u3,zz1,60\nu3,zz2,70\n"
    with pytest.raises(
        DataError,
        match=r"items\.csv: 2 item\(s\) used in interactions\.csv are not in the items table: 'zz1', 'zz2'",
    ):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


def test_empty_timestamp_names_line(tmp_path: Path) -> None:
    inter = "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,\n"
    with pytest.raises(
        DataError, match=r"interactions\.csv, column 'timestamp', line 3: empty timestamp"
    ):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


def test_bad_date_names_line_and_value(tmp_path: Path) -> None:
    inter = "user_id,item_id,timestamp\nu1,i1,2020-01-01\nu1,i2,yesterday\n"
    with pytest.raises(
        DataError, match=r"line 3: 'yesterday' is neither a unix timestamp nor an ISO-8601 date"
    ):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


def test_mixed_timestamp_kinds(tmp_path: Path) -> None:
    inter = "user_id,item_id,timestamp\nu1,i1,1600000000\nu1,i2,2020-01-01\n"
    with pytest.raises(DataError, match=r"mixes unix integers \(line 2"):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


def test_empty_id_names_line_and_column(tmp_path: Path) -> None:
    inter = "user_id,item_id,timestamp\nu1,i1,1\n,i2,2\n"
    with pytest.raises(DataError, match=r"interactions\.csv, line 3, column 'user_id': empty id"):
        load_generic(write(tmp_path, inter), GenericSource(), "x")


def test_repeated_item_ids_in_items_table(tmp_path: Path) -> None:
    items = ITEMS + "i1,Another Kettle,Acme,Kitchen\n"
    with pytest.raises(DataError, match=r"items\.csv, column 'item_id': repeated item ids: 'i1'"):
        load_generic(write(tmp_path, items=items), GenericSource(), "x")


def test_no_text_column_at_all(tmp_path: Path) -> None:
    items = "item_id,price\ni1,1\ni2,2\ni3,3\ni4,4\n"
    with pytest.raises(
        DataError, match=r"items\.csv: none of the text columns 'title', 'brand', 'category'"
    ):
        load_generic(write(tmp_path, items=items), GenericSource(), "x")


def test_no_rows(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"interactions\.csv: no interactions"):
        load_generic(write(tmp_path, "user_id,item_id,timestamp\n"), GenericSource(), "x")


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"interactions\.csv: empty file"):
        load_generic(write(tmp_path, ""), GenericSource(), "x")


def test_unknown_suffix(tmp_path: Path) -> None:
    write(tmp_path, names=("interactions.xlsx", "items.csv"))
    with pytest.raises(DataError, match=r"interactions\.xlsx: unknown table format"):
        load_generic(tmp_path, GenericSource(interactions="interactions.xlsx"), "x")


def test_corrupt_parquet(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "interactions.parquet").write_bytes(b"PAR1 nonsense")
    with pytest.raises(DataError, match=r"interactions\.parquet: cannot read as Parquet"):
        load_generic(tmp_path, GenericSource(interactions="interactions.parquet"), "x")


def test_result_arrays_are_flat_numpy(tmp_path: Path) -> None:
    d = load_generic(write(tmp_path), GenericSource(), "x")
    assert d.flat_items.dtype == np.int32 and d.offsets.dtype == np.int64
