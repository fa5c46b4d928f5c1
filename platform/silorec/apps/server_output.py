"""What the merge server writes besides the phases' bookkeeping: result rows and
paired sums from evaluate replies, the saved models, the software versions and the
run directory. Pure functions of their inputs, so that the workflow in
:mod:`silorec.apps.server` reads as the phases alone.
"""

from __future__ import annotations

import io
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from silorec.apps.run_config import OUT_DIR, RUN_DIR
from silorec.evaluation.paired import PAIRED_METRICS
from silorec.models import Weights
from silorec.results import ResultRow, new_run_dir, write_bytes_atomic, write_json_atomic
from silorec.scenario.schema import slugify
from silorec.wire import protocol
from silorec.wire.replies import EvaluateReply

MODELS_DIR = "models"

#: label -> (kind, source domain or None, weights)
Models = Mapping[str, tuple[str, str | None, Weights]]


def result_rows(
    domain: str, role: str, result: EvaluateReply, models: Models, splits: list[str]
) -> list[ResultRow]:
    """One row per model and split of one domain's validated evaluate reply."""
    return [
        ResultRow(
            model=label,
            kind=kind,
            source=source,
            domain=domain,
            domain_role=role,
            split=split,
            n_users=result.n_users[label][split],
            metrics=result.results[label][split],
        )
        for label, (kind, source, _) in models.items()
        for split in splits
    ]


def paired_entries(
    domain: str, record: Mapping[str, float], labels: list[str], splits: list[str]
) -> list[dict[str, Any]]:
    """Paired-comparison sums of every pair of models (see evaluation.paired) that the
    reply carries; pairs with a missing statistic are skipped."""
    out = []
    for split in splits:
        for metric in PAIRED_METRICS:
            for i, j in combinations(range(len(labels)), 2):
                stats = [record.get(protocol.pair_key(split, metric, i, j, s))
                         for s in protocol.PAIR_STATS]  # fmt: skip
                if any(v is None for v in stats):
                    continue
                out.append({"domain": domain, "split": split, "metric": metric,
                            "a": labels[i], "b": labels[j], "n": int(stats[0]),
                            "sum": float(stats[1]), "sumsq": float(stats[2])})  # fmt: skip
    return out


def save_models(run_dir: Path, models: Models) -> None:
    """``models/<n>.npz`` per model plus ``models/index.json`` (label, kind, source,
    file), each written atomically."""
    index = []
    for number, (label, (kind, source, weights)) in enumerate(models.items()):
        buffer = io.BytesIO()
        np.savez(buffer, **weights)
        name = f"{number:02d}-{slugify(label)}.npz"
        write_bytes_atomic(run_dir / MODELS_DIR / name, buffer.getvalue())
        index.append({"label": label, "kind": kind, "source": source, "file": name})
    write_json_atomic(run_dir / MODELS_DIR / "index.json", index)


def software_versions() -> dict[str, str]:
    """Python's and the main packages' versions, for the results' provenance."""
    out = {"python": platform.python_version()}
    for package in ("silorec", "torch", "flwr", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def run_dir_for(run_config: Mapping[str, Any], scenario_name: str) -> Path:
    """The exact ``run-dir`` if given (must be empty), else a new one under ``out-dir``."""
    exact = str(run_config.get(RUN_DIR, "") or "")
    if exact:
        path = Path(exact).expanduser().resolve()
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(f"run directory {path} is not empty; choose another")
        path.mkdir(parents=True, exist_ok=True)
        return path
    parent = Path(str(run_config.get(OUT_DIR, "runs") or "runs")).expanduser().resolve()
    return new_run_dir(parent, scenario_name)
