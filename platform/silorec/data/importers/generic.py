"""The generic format: what users produce from their own logs.

Two tables in one folder, each CSV (``.csv``, ``.csv.gz``, ``.tsv``) or Parquet
(``.parquet``, ``.pq``), chosen by file suffix:

- interactions: one row per interaction with a user column, an item column and a
  timestamp column (unix integers or ISO-8601 strings);
- items: one row per item with the item column and text columns (by default
  ``title``, ``brand``, ``category``).

Column and file names come from :class:`~silorec.scenario.GenericSource`. Each user's
interactions are sorted by timestamp (stable: ties keep file order); exact duplicate
(user, item, timestamp) rows are dropped; every interacted item must be in the items
table; items never interacted with are dropped. Users with at least 3 interactions
hold out their last two (leave-one-out); shorter users only train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from silorec.data.domain import DomainData
from silorec.data.errors import DataError, preview
from silorec.data.importers._common import domain_from_events, text_value
from silorec.scenario.schema import GenericSource

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def table_paths(folder: Path, source: GenericSource) -> tuple[Path, Path]:
    """``(interactions, items)`` file paths of a generic source in ``folder``."""
    return Path(folder) / source.interactions, Path(folder) / source.items


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


def _row_label(path: Path, index: int) -> str:
    """A human position of data row ``index`` (0-based): the CSV line (the header is
    line 1) or the Parquet row."""
    return f"row {index + 1}" if _is_parquet(path) else f"line {index + 2}"


def read_table(path: Path, required: list[str]) -> pd.DataFrame:
    """A CSV or Parquet table with at least the ``required`` columns. CSV cells are
    read as strings (ids keep leading zeros; nothing becomes NaN)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lower = path.name.lower()
    try:
        if _is_parquet(path):
            df = pd.read_parquet(path)
        elif lower.endswith(CSV_SUFFIXES):
            sep = "\t" if ".tsv" in lower else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        else:
            raise DataError(
                f"{path}: unknown table format; use one of "
                f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}"
            )
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (expected a header row)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, TypeError, OSError) as exc:
        # pyarrow's errors for corrupt Parquet files subclass ValueError/TypeError/OSError.
        kind = "Parquet" if _is_parquet(path) else "CSV"
        detail = " ".join(str(exc).split())
        raise DataError(f"{path}: cannot read as {kind}: {detail}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        found = ", ".join(repr(c) for c in df.columns) or "none"
        raise DataError(f"{path}: missing column {names} (columns found: {found})")
    return df


def _id_column(df: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """An id column as strings; empty or null ids are errors naming the row."""
    values = df[column]
    null = values.isna().to_numpy()
    strings = values.astype(str).str.strip()
    bad = null | (strings == "").to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}, {_row_label(path, first)}, column '{column}': empty id")
    if values.dtype.kind == "f":  # Parquet float ids: 12.0 -> "12"
        as_int = values.astype(np.int64)
        if (as_int == values).all():
            strings = as_int.astype(str)
    return strings.to_numpy(dtype=object)


def parse_timestamps(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """Timestamps as numbers that order like time: unix integers (or floats) as they
    are, ISO-8601 strings and datetime columns as nanoseconds since the epoch."""
    where = f"{path}, column '{column}'"
    if values.dtype.kind in "iu":
        return values.to_numpy(dtype=np.int64)
    if values.dtype.kind == "f":
        null = values.isna().to_numpy()
        if null.any():
            raise DataError(
                f"{where}, {_row_label(path, int(np.flatnonzero(null)[0]))}: empty timestamp"
            )
        return values.to_numpy(dtype=np.float64)
    if values.dtype.kind == "M" or isinstance(values.dtype, pd.DatetimeTZDtype):
        if values.isna().any():
            first = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{where}, {_row_label(path, first)}: empty timestamp")
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.to_numpy(dtype="datetime64[ns]").astype(np.int64)

    text = values.astype(str).str.strip()
    empty = (text == "") | values.isna()
    if empty.any():
        first = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{where}, {_row_label(path, first)}: empty timestamp")
    is_int = text.str.fullmatch(r"[+-]?\d+").to_numpy()
    if is_int.all():
        try:
            return text.astype(np.int64).to_numpy()
        except (ValueError, OverflowError):
            raise DataError(f"{where}: integer timestamps out of range") from None
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64)
    if is_int.any():
        first_int = int(np.flatnonzero(is_int)[0])
        first_str = int(np.flatnonzero(~is_int)[0])
        raise DataError(
            f"{where}: mixes unix integers ({_row_label(path, first_int)}: "
            f"{text.iloc[first_int]!r}) and other values ({_row_label(path, first_str)}: "
            f"{text.iloc[first_str]!r}); use one kind"
        )
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}, {_row_label(path, first)}: {text.iloc[first]!r} is neither a unix "
            "timestamp nor an ISO-8601 date"
        )
    return parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def load_generic(path: Path, source: GenericSource, name: str) -> DomainData:
    """Load a domain in the generic format from the folder ``path``."""
    inter_path, items_path = table_paths(Path(path), source)
    ucol, icol, tcol = source.user_column, source.item_column, source.timestamp_column

    # -- interactions ------------------------------------------------------
    inter = read_table(inter_path, [ucol, icol, tcol])
    if inter.empty:
        raise DataError(f"{inter_path}: no interactions (the table has a header but no rows)")
    users = _id_column(inter, ucol, inter_path)
    items = _id_column(inter, icol, inter_path)
    times = parse_timestamps(inter[tcol], inter_path, tcol)
    dup = pd.DataFrame({"u": users, "i": items, "t": times}).duplicated(keep="first").to_numpy()
    if dup.any():
        keep = ~dup
        users, items, times = users[keep], items[keep], times[keep]

    # -- items ---------------------------------------------------------------
    table = read_table(items_path, [icol])
    text_columns = [c for c in source.text_columns if c in table.columns]
    if source.text_columns and not text_columns:
        wanted = ", ".join(repr(c) for c in source.text_columns)
        found = ", ".join(repr(c) for c in table.columns)
        raise DataError(
            f"{items_path}: none of the text columns {wanted} is present (columns found: "
            f"{found}); set `text_columns` of the generic source to the ones you have"
        )
    table_ids = _id_column(table, icol, items_path)
    index = pd.Index(table_ids)
    if not index.is_unique:
        dupes = index[index.duplicated()].unique()
        raise DataError(f"{items_path}, column '{icol}': repeated item ids: {preview(list(dupes))}")
    codes_in_table = index.get_indexer(items)
    unknown = codes_in_table < 0
    if unknown.any():
        missing = pd.unique(items[unknown])
        raise DataError(
            f"{items_path}: {len(missing)} item(s) used in {inter_path.name} are not in the "
            f"items table: {preview(list(missing))}"
        )

    # Catalogue: interacted items, in items-table order.
    used = np.zeros(len(table_ids), dtype=bool)
    used[codes_in_table] = True
    kept_rows = np.flatnonzero(used)
    remap = np.full(len(table_ids), -1, dtype=np.int64)
    remap[kept_rows] = np.arange(len(kept_rows))
    item_codes = remap[codes_in_table]
    fields: dict[str, list[str]] = {}
    for column in source.text_columns:
        if column in table.columns:
            fields[column] = [
                text_value(v) for v in table[column].to_numpy(dtype=object)[kept_rows]
            ]
        else:
            fields[column] = [""] * len(kept_rows)

    user_codes, user_ids = pd.factorize(pd.Series(users, dtype=object), sort=False)
    return domain_from_events(
        name,
        user_codes=user_codes,
        item_codes=item_codes,
        times=times,
        user_ids=[str(u) for u in user_ids],
        item_ids=[str(i) for i in table_ids[kept_rows]],
        fields=fields,
    )
