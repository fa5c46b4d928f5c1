"""Raw Amazon review data as published by J. McAuley's group (UCSD).

Two files per domain, each plain text or gzip (detected by magic bytes, not by
suffix), one record per line:

- reviews: JSON lines with ``reviewerID``, ``asin``, ``overall`` (rating) and
  ``unixReviewTime`` (same keys in the 2014 and 2018 releases);
- metadata: 2014 lines are Python dict literals (read with ``ast.literal_eval``) with
  ``asin``, ``title``, ``brand``, ``categories`` (a list of category paths); 2018 lines
  are strict JSON with ``asin``, ``title``, ``brand``, ``category`` (one path) and
  ``main_cat``.

The line format is detected per line (JSON first, then a Python literal), so either
release, or a mix, loads. Reviews below ``min_rating`` are dropped first; then a user's
repeated reviews of one item are collapsed to the earliest. Items keep the order in
which they first appear in the reviews file; items without metadata get empty text.
Users with at least 3 reviews hold out their last two (leave-one-out).
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from silorec.data.domain import DomainData
from silorec.data.errors import DataError
from silorec.data.importers._common import TEXT_FIELDS, domain_from_events, text_value

GZIP_MAGIC = b"\x1f\x8b"


def _open_text(path: Path):  # noqa: ANN202 - a text file object
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
        if magic == GZIP_MAGIC:
            return gzip.open(path, "rt", encoding="utf-8")
        return path.open("r", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every non-blank line of a JSON-lines or
    Python-literal-lines file (plain or gzip). Malformed lines raise :class:`DataError`
    naming the file and line."""
    number = 0
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, start=1):  # noqa: B007 - used after the loop
                text = line.strip()
                if not text:
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    try:
                        record = ast.literal_eval(text)
                    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                        shown = text if len(text) <= 60 else text[:57] + "..."
                        raise DataError(
                            f"{path}, line {number}: neither a JSON object nor a Python "
                            f"dict literal: {shown!r}"
                        ) from None
                if not isinstance(record, dict):
                    raise DataError(
                        f"{path}, line {number}: expected one object per line, got "
                        f"{type(record).__name__}"
                    )
                yield number, record
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line {number + 1}: not UTF-8 text ({exc.reason})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}, line {number + 1}: corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _required(record: dict[str, Any], key: str, path: Path, number: int) -> Any:
    value = record.get(key)
    if value is None or value == "":
        raise DataError(f"{path}, line {number}, field '{key}': missing")
    return value


def _as_id(value: Any, key: str, path: Path, number: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DataError(f"{path}, line {number}, field '{key}': expected a string id, got {value!r}")


def _as_time(value: Any, path: Path, number: int) -> int:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise DataError(
        f"{path}, line {number}, field 'unixReviewTime': expected a unix timestamp, got {value!r}"
    )


def _as_rating(value: Any, path: Path, number: int) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise DataError(
        f"{path}, line {number}, field 'overall': expected a rating number, got {value!r}"
    )


def _category(record: dict[str, Any]) -> str:
    """2018: ``category`` (one path; ``main_cat`` when it is empty). 2014:
    ``categories`` (several paths): the first one."""
    category = record.get("category")
    if category:
        return text_value(category)
    categories = record.get("categories")
    if isinstance(categories, list) and categories:
        return text_value(categories[0])
    if categories:
        return text_value(categories)
    main_cat = text_value(record.get("main_cat"))
    return "" if "<" in main_cat else main_cat  # some 2018 main_cat values are HTML


def load_amazon_raw(
    reviews: Path, metadata: Path, name: str, *, min_rating: float | None = None
) -> DomainData:
    """Load a domain from a raw Amazon reviews file and its metadata file."""
    reviews, metadata = Path(reviews), Path(metadata)
    if not metadata.is_file():  # fail before reading a large reviews file
        raise DataError(f"{metadata}: file not found")

    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    ratings: list[float] = []
    for number, record in read_records(reviews):
        users.append(
            _as_id(_required(record, "reviewerID", reviews, number), "reviewerID", reviews, number)
        )
        items.append(_as_id(_required(record, "asin", reviews, number), "asin", reviews, number))
        times.append(
            _as_time(_required(record, "unixReviewTime", reviews, number), reviews, number)
        )
        if min_rating is not None:
            ratings.append(
                _as_rating(_required(record, "overall", reviews, number), reviews, number)
            )
    if not users:
        raise DataError(f"{reviews}: no reviews")

    user_arr = np.asarray(users, dtype=object)
    item_arr = np.asarray(items, dtype=object)
    time_arr = np.asarray(times, dtype=np.int64)
    if min_rating is not None:
        keep = np.asarray(ratings, dtype=np.float64) >= min_rating
        if not keep.any():
            raise DataError(
                f"{reviews}: no review has a rating of at least {min_rating} (min_rating)"
            )
        user_arr, item_arr, time_arr = user_arr[keep], item_arr[keep], time_arr[keep]

    user_codes, user_ids = pd.factorize(pd.Series(user_arr, dtype=object), sort=False)
    item_codes, item_ids = pd.factorize(pd.Series(item_arr, dtype=object), sort=False)
    # Repeated (user, item) reviews: keep the earliest (ties: the first in the file).
    order = np.argsort(time_arr, kind="stable")
    pairs = user_codes[order].astype(np.int64) * len(item_ids) + item_codes[order]
    _, first = np.unique(pairs, return_index=True)
    keep_rows = order[np.sort(first)]

    index = {asin: i for i, asin in enumerate(item_ids)}
    fields: dict[str, list[str]] = {f: [""] * len(item_ids) for f in TEXT_FIELDS}
    seen = np.zeros(len(item_ids), dtype=bool)
    for number, record in read_records(metadata):
        asin = _as_id(_required(record, "asin", metadata, number), "asin", metadata, number)
        i = index.get(asin)
        if i is None or seen[i]:
            continue  # not reviewed here, or a repeated entry (the first wins)
        seen[i] = True
        fields["title"][i] = text_value(record.get("title"))
        fields["brand"][i] = text_value(record.get("brand"))
        fields["category"][i] = _category(record)

    return domain_from_events(
        name,
        user_codes=user_codes[keep_rows],
        item_codes=item_codes[keep_rows],
        times=time_arr[keep_rows],
        user_ids=[str(u) for u in user_ids],
        item_ids=[str(i) for i in item_ids],
        fields=fields,
    )
