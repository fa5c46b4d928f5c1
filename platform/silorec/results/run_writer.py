"""``write_run``: a run's results, report and plots into its run directory, with
the crash-safety guarantees described in :mod:`silorec.results.io`. Its own module
because it needs the report and the plots, which in turn need io's primitives: io
stays free of them, and the imports run one way."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from silorec.results.io import (
    PLOTS_DIR,
    REPORT_MD,
    RESULTS_CSV,
    RESULTS_JSON,
    ResultsWriteError,
    _json_bytes,
    write_bytes_atomic,
)
from silorec.results.plots import render_plots
from silorec.results.report import render_report
from silorec.results.schema import RunResults


def write_run(
    results: RunResults, run_dir: str | os.PathLike[str], *, plots: bool = True
) -> list[Path]:
    """Write a run's results into ``run_dir`` (created if needed) and return the paths
    written: ``results.json``, ``results.csv``, ``report.md``, then the plots.

    See the module docstring for what is guaranteed when something fails. With
    ``plots=False`` no plot is made (existing plot files are left alone). A plot with
    nothing to show (no test rows, no individual models) is not written, and a stale
    file of that name from an earlier call is removed so it cannot mislead.
    """
    folder = Path(run_dir)
    # 1. The data files: if these cannot be rendered, nothing is written.
    json_bytes = _json_bytes(results)
    csv_bytes = results.tidy_frame().to_csv(index=False, lineterminator="\n").encode("utf-8")

    # 2. Derived files, in memory; a failure here never costs the data files.
    errors: list[str] = []
    first_exc: BaseException | None = None
    pngs: dict[str, bytes | None] = {}
    if plots:
        try:
            pngs = render_plots(results)
        except Exception as exc:  # noqa: BLE001 - reported below, after the data is safe
            errors.append(f"plots: {type(exc).__name__}: {exc}")
            first_exc = first_exc or exc
    shown = [f"{PLOTS_DIR}/{name}" for name, data in pngs.items() if data is not None]
    report_bytes: bytes | None = None
    try:
        report_bytes = render_report(results, plots=shown).encode("utf-8")
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{REPORT_MD}: {type(exc).__name__}: {exc}")
        first_exc = first_exc or exc

    # 3. Atomic writes, results.json last.
    written_plots: list[Path] = []
    for name, data in pngs.items():
        path = folder / PLOTS_DIR / name
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        written_plots.append(write_bytes_atomic(path, data))
    written_report: list[Path] = []
    if report_bytes is not None:
        written_report.append(write_bytes_atomic(folder / REPORT_MD, report_bytes))
    csv_path = write_bytes_atomic(folder / RESULTS_CSV, csv_bytes)
    json_path = write_bytes_atomic(folder / RESULTS_JSON, json_bytes)
    written = [json_path, csv_path, *written_report, *written_plots]
    if errors:
        raise ResultsWriteError(
            f"results.json and results.csv were written to {folder}, but " + "; ".join(errors),
            written,
        ) from first_exc
    return written
