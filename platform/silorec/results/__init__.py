"""Results of a run: tidy rows, atomic writers, ``report.md`` and plots.

Runs on the merge server: nothing here reads interactions or imports Flower.

>>> from silorec.results import load_run
>>> results = load_run("runs/quickstart-20250101-120000")      # doctest: +SKIP
>>> results.table("test", "recall@10")                          # doctest: +SKIP

See :mod:`silorec.results.schema` for what is recorded, :mod:`silorec.results.io` for
the run directory layout and its crash-safety guarantees.
"""

from silorec.results.analysis import gain_share, merge_vs_individual, ratio, unseen_transfer
from silorec.results.io import (
    BAR_PLOT,
    MATRIX_PLOT,
    PLOTS_DIR,
    REPORT_MD,
    RESULTS_CSV,
    RESULTS_JSON,
    ResultsError,
    ResultsWriteError,
    load_run,
    new_run_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from silorec.results.report import render_report
from silorec.results.run_writer import write_run
from silorec.results.schema import (
    BASE_LABEL,
    FEDAVG_LABEL,
    ID_COLUMNS,
    INDIVIDUAL_PREFIX,
    MEAN_MERGED,
    MEAN_UNSEEN,
    Failure,
    NodeRecord,
    ResultRow,
    RunResults,
    individual_label,
    metric_sort_key,
    now_iso,
)

__all__ = [
    "BAR_PLOT",
    "BASE_LABEL",
    "FEDAVG_LABEL",
    "ID_COLUMNS",
    "INDIVIDUAL_PREFIX",
    "MATRIX_PLOT",
    "MEAN_MERGED",
    "MEAN_UNSEEN",
    "PLOTS_DIR",
    "REPORT_MD",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "Failure",
    "NodeRecord",
    "ResultRow",
    "ResultsError",
    "ResultsWriteError",
    "RunResults",
    "gain_share",
    "individual_label",
    "load_run",
    "merge_vs_individual",
    "metric_sort_key",
    "new_run_dir",
    "now_iso",
    "ratio",
    "render_report",
    "unseen_transfer",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_run",
    "write_text_atomic",
]
