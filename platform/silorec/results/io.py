"""Writing and reading a run directory.

Every run writes to its own directory (:func:`new_run_dir`)::

    <runs>/<scenario>-<YYYYmmdd-HHMMSS>[-n]/
        results.json                  everything (RunResults); load_run() reads it back
        results.csv                   the tidy table: one record per model x domain x split
        report.md                     the human-readable report
        plots/recall10_by_domain.png  grouped bars: test Recall@10 per domain per model
        plots/cross_domain_matrix.png individual models x domains heatmap

Crash safety, as implemented by :func:`silorec.results.run_writer.write_run` (with the
primitives here):

1. Everything is *rendered in memory first* (JSON, CSV, report text, PNG bytes).
   If the results are unserialisable, nothing is written.
2. Then each file is replaced *atomically* (temporary file in the same folder,
   fsync, ``os.replace``): a reader sees either the old file or the new one, never a
   half-written one, and no temporary file is left behind, even if writing fails.
3. ``results.json`` is written *last*: once it is new, every other file of the same
   call is new too.

Atomicity is per file, not for the directory as a whole: if the disk fills up
between two files, earlier files of this call are new and later ones are old (or
absent). The derived files (report, plots) never cost the data: if rendering the
report or a plot fails, ``results.json`` and ``results.csv`` are still written and
:class:`ResultsWriteError` is raised afterwards, naming what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from silorec.results.schema import SCHEMA_VERSION, RunResults

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
BAR_PLOT = "recall10_by_domain.png"
MATRIX_PLOT = "cross_domain_matrix.png"
LAMBDA_PLOT = "merge_lambdas.png"
LOSS_PLOT = "merge_loss.png"

_FILE_MODE = 0o644


class ResultsError(ValueError):
    """A run directory or results file that cannot be read (the message names the file)."""


class ResultsWriteError(RuntimeError):
    """Some derived output (report, a plot) could not be rendered; the data files were
    still written. ``written`` lists the files that were."""

    def __init__(self, message: str, written: list[Path]) -> None:
        super().__init__(message)
        self.written = written


# ---------------------------------------------------------------------------
# Atomic writers.
# ---------------------------------------------------------------------------


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder is
    written, flushed and fsynced, then renamed over ``path`` with :func:`os.replace`.

    The parent folder is created if needed. On any error the temporary file is removed
    and ``path`` keeps its previous content (or stays absent). Returns ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` atomically (see :func:`write_bytes_atomic`); newlines are kept
    as given (``\\n``), never translated."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, indent: int = 2) -> Path:
    """Write ``obj`` (plain JSON data or a pydantic model) as strict JSON (no NaN),
    atomically. Keys keep their order; non-ASCII text is written as UTF-8."""
    return write_bytes_atomic(path, _json_bytes(obj, indent=indent))


def _json_bytes(obj: Any, *, indent: int = 2) -> bytes:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Run directories.
# ---------------------------------------------------------------------------


def new_run_dir(
    parent: str | os.PathLike[str], scenario_name: str, *, now: datetime | None = None
) -> Path:
    """Create and return a new, empty ``<parent>/<scenario>-<YYYYmmdd-HHMMSS>[-n]``.

    The time is local time (``now`` for tests). If the name is taken (two runs in the
    same second), ``-1``, ``-2``, ... is appended; creation is atomic (``mkdir``), so
    concurrent runs never share a directory. Characters other than letters, digits,
    ``_``, ``.`` and ``-`` in the scenario name become ``-``.
    """
    root = Path(parent)
    root.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario_name).strip("-.") or "run"
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{slug}-{stamp}"
    for n in range(10_000):
        candidate = root / (base if n == 0 else f"{base}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"could not find a free run directory name for {base} in {root}")


def load_run(run_dir: str | os.PathLike[str]) -> RunResults:
    """Load ``results.json`` from a run directory (or the file itself) into an equal
    :class:`RunResults`. Errors name the file and what is wrong with it."""
    path = Path(run_dir)
    if path.is_dir() or (not path.exists() and path.suffix != ".json"):
        path = path / RESULTS_JSON
    if not path.exists():
        where = path.parent
        hint = "" if where.exists() else f" (the folder {where} does not exist)"
        raise FileNotFoundError(
            f"no {path.name} at {path}{hint}: not a silorec run directory, or the run "
            "did not get as far as writing its results"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{path} must hold a JSON object, found {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path} has results schema version {version}, newer than this silorec "
            f"understands ({SCHEMA_VERSION}): upgrade silorec to read it"
        )
    try:
        return RunResults.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()[:10]
        )
        more = f" (and {exc.error_count() - 10} more)" if exc.error_count() > 10 else ""
        raise ResultsError(f"{path} is not a valid silorec results file: {problems}{more}") from exc
