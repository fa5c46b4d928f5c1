"""The MergeRec release format (one folder, or a ``.tar.gz`` of it, per domain).

Six JSON files (see ``docs/data-formats.md``):

- ``train.json``: ``{"<uid>": [item, ...]}``, each user's items in time order except
  the last two;
- ``val.json`` / ``test.json``: ``{"<uid>": [item]}``, the second-to-last and last item;
- ``umap.json``: reviewer id -> uid; ``smap.json``: product id (ASIN) -> item index;
- ``meta_data.json``: ASIN -> ``{"title", "brand", "category"}``.

The full sequence of a user is train + val + test. Users with both a validation and a
test item hold them out (``holdout = 2``); users published without them (two Pantry
users) keep their training items with ``holdout = 0``. Archives are read in memory,
never extracted.
"""

from __future__ import annotations

import json
import tarfile
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from silorec.data.domain import LOO_HOLDOUT, DomainData, ItemCatalogue
from silorec.data.errors import DataError, preview
from silorec.data.importers._common import TEXT_FIELDS, text_value

#: The files of one MergeRec domain.
MERGEREC_FILES = ("train.json", "val.json", "test.json", "umap.json", "smap.json", "meta_data.json")

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    """Whether ``path`` names a tar archive by its suffix."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def input_files(path: Path) -> list[Path]:
    """The files a MergeRec domain at ``path`` is read from (for cache fingerprints)."""
    if path.is_dir():  # missing files are reported by load_mergerec, not here
        return [path / f for f in MERGEREC_FILES if (path / f).is_file()]
    return [path]


# ---------------------------------------------------------------------------
# Reading the raw bytes: folder or archive.
# ---------------------------------------------------------------------------


def _read_folder(path: Path) -> dict[str, tuple[bytes, str]]:
    missing = [f for f in MERGEREC_FILES if not (path / f).is_file()]
    if missing:
        raise DataError(
            f"{path}: not a MergeRec domain folder: missing {', '.join(missing)} "
            f"(expected {', '.join(MERGEREC_FILES)})"
        )
    out: dict[str, tuple[bytes, str]] = {}
    for f in MERGEREC_FILES:
        where = str(path / f)
        try:
            out[f] = ((path / f).read_bytes(), where)
        except OSError as exc:
            raise DataError(f"{where}: cannot read: {exc.strerror or exc}") from None
    return out


def _read_archive(path: Path) -> dict[str, tuple[bytes, str]]:
    try:
        tf = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{path}: not a readable tar archive: {exc}") from None
    with tf:
        found: dict[str, list[tarfile.TarInfo]] = {f: [] for f in MERGEREC_FILES}
        try:
            members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt tar archive: {exc}") from None
        for member in members:
            if not member.isfile():
                continue
            parts = [p for p in PurePosixPath(member.name).parts if p not in (".", "")]
            if 1 <= len(parts) <= 2 and parts[-1] in found:
                found[parts[-1]].append(member)
        missing = [f for f, ms in found.items() if not ms]
        if missing:
            raise DataError(
                f"{path}: not a MergeRec archive: no {', '.join(missing)} inside "
                f"(expected <Domain>/{{{','.join(MERGEREC_FILES)}}})"
            )
        dirs = {PurePosixPath(m.name).parent.as_posix() for ms in found.values() for m in ms}
        if len(dirs) > 1:
            raise DataError(
                f"{path}: archive holds several MergeRec domains ({preview(sorted(dirs))}); "
                "use one archive per domain"
            )
        out: dict[str, tuple[bytes, str]] = {}
        for f, (member, *_) in found.items():
            where = f"{path}:{member.name}"
            try:
                handle = tf.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() members always extract
                    raise DataError(f"{where}: cannot read from the archive")
                out[f] = (handle.read(), where)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DataError(f"{where}: cannot read from the archive: {exc}") from None
        return out


def _parse_object(blob: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(blob)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{where}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not isinstance(obj, dict):
        raise DataError(
            f"{where}: expected a JSON object at the top level, got {type(obj).__name__}"
        )
    return obj


# ---------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _item_index(smap: dict[str, Any], where: str) -> list[str]:
    """``smap`` (ASIN -> index) inverted to the list of ASINs by index."""
    if not smap:
        raise DataError(f"{where}: no items")
    for asin, index in smap.items():
        if not _is_int(index):
            raise DataError(
                f"{where}: product {asin!r} maps to {index!r}, expected an integer item index"
            )
    n = len(smap)
    ids: list[str | None] = [None] * n
    for asin, index in smap.items():
        if not 0 <= index < n:
            raise DataError(
                f"{where}: item indices must be exactly 0..{n - 1} (one per product), "
                f"but product {asin!r} has index {index}"
            )
        if ids[index] is not None:
            raise DataError(
                f"{where}: item index {index} is used by both {ids[index]!r} and {asin!r}"
            )
        ids[index] = asin
    return ids  # type: ignore[return-value]  # every slot is filled: n distinct values in 0..n-1


def _user_index(umap: dict[str, Any], where: str) -> dict[int, str]:
    """``umap`` (reviewer id -> uid) inverted."""
    out: dict[int, str] = {}
    for reviewer, uid in umap.items():
        if not _is_int(uid) or uid < 0:
            raise DataError(
                f"{where}: reviewer {reviewer!r} maps to {uid!r}, expected a non-negative integer"
            )
        if uid in out:
            raise DataError(
                f"{where}: user index {uid} is used by both {out[uid]!r} and {reviewer!r}"
            )
        out[uid] = reviewer
    return out


def _check_sequences(seqs: dict[str, Any], where: str, n_items: int, *, single: bool) -> None:
    """Keys are integer user indices, values lists of item indices in range
    (exactly one item per user when ``single``). Vectorised; slow path only to name
    the first offender."""
    for key, value in seqs.items():
        if not key.isdigit():
            raise DataError(f"{where}: user key {key!r} is not an integer user index")
        if not isinstance(value, list):
            raise DataError(f"{where}: user {key}: expected a list of item indices, got {value!r}")
        if single and len(value) != 1:
            raise DataError(f"{where}: user {key}: expected exactly one item, got {len(value)}")
    try:
        flat = np.array(list(chain.from_iterable(seqs.values())))
        ok = flat.size == 0 or (
            flat.dtype.kind in "iu" and int(flat.min()) >= 0 and int(flat.max()) < n_items
        )
    except (ValueError, TypeError, OverflowError):
        ok = False
    if ok:
        return
    for key, value in seqs.items():
        for item in value:
            if not _is_int(item):
                raise DataError(f"{where}: user {key}: item {item!r} is not an integer item index")
            if not 0 <= item < n_items:
                raise DataError(
                    f"{where}: user {key}: item index {item} is outside 0..{n_items - 1} "
                    "(the items of smap.json)"
                )
    raise DataError(f"{where}: unreadable item lists")  # pragma: no cover - defensive


# ---------------------------------------------------------------------------
# The importer.
# ---------------------------------------------------------------------------


def load_mergerec(path: Path, name: str) -> DomainData:
    """Load one MergeRec domain from its folder or ``.tar.gz``.

    Users are ordered by their MergeRec index; item indices are the ``smap.json``
    values, so item ``i`` of the returned domain is item ``i`` of the release.
    """
    path = Path(path)
    if path.is_dir():
        raw = _read_folder(path)
    elif path.is_file():
        raw = _read_archive(path)
    else:
        raise DataError(f"{path}: no such MergeRec folder or archive")
    parsed = {f: _parse_object(blob, where) for f, (blob, where) in raw.items()}
    where = {f: w for f, (_, w) in raw.items()}

    item_ids = _item_index(parsed["smap.json"], where["smap.json"])
    n_items = len(item_ids)
    reviewers = _user_index(parsed["umap.json"], where["umap.json"])
    train, val, test = parsed["train.json"], parsed["val.json"], parsed["test.json"]
    _check_sequences(train, where["train.json"], n_items, single=False)
    _check_sequences(val, where["val.json"], n_items, single=True)
    _check_sequences(test, where["test.json"], n_items, single=True)
    for key in val.keys() ^ test.keys():
        has, lacks = ("val.json", "test.json") if key in val else ("test.json", "val.json")
        raise DataError(f"{where[lacks]}: user {key} has an item in {has} but none here")

    keys = sorted(train.keys() | val.keys(), key=int)
    sequences: list[list[int]] = []
    user_ids: list[str] = []
    holdout: list[int] = []
    empty = ()
    for key in keys:
        train_items = train.get(key, empty)
        held = val.get(key)
        seq = train_items if held is None else [*train_items, *held, *test[key]]
        if not seq:
            continue  # a user listed with no items at all
        uid = int(key)
        if uid not in reviewers:
            raise DataError(
                f"{where['umap.json']}: no reviewer id for user {uid} (used in train/val/test)"
            )
        user_ids.append(reviewers[uid])
        sequences.append(seq)
        holdout.append(LOO_HOLDOUT if held is not None and len(seq) > LOO_HOLDOUT else 0)
    if not sequences:
        raise DataError(f"{where['train.json']}: no interactions")

    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(chain.from_iterable(sequences), dtype=np.int32, count=int(offsets[-1]))

    meta = parsed["meta_data.json"]
    fields: dict[str, list[str]] = {f: [] for f in TEXT_FIELDS}
    for asin in item_ids:
        entry = meta.get(asin)
        if entry is None:
            entry = {}
        elif not isinstance(entry, dict):
            raise DataError(
                f"{where['meta_data.json']}: product {asin!r}: expected an object, got {entry!r}"
            )
        for f in TEXT_FIELDS:
            fields[f].append(text_value(entry.get(f)))

    return DomainData(
        name=name,
        items=ItemCatalogue(ids=item_ids, fields=fields),
        user_ids=user_ids,
        offsets=offsets,
        flat_items=flat,
        holdout=np.asarray(holdout, dtype=np.int8),
    )
