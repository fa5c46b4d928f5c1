"""What the merge server merged from, kept in the run so a merge can be recomputed.

The merge phase reads the screened uploads (clipped where a task vector was too
large), the catalogue embeddings (and, for a text-encoder, item texts) that nodes
uploaded, and each domain's mean history length from its describe reply. All of it
already sits on the merge server; this module writes it to ``merge-inputs/`` of the
run (only when the scenario saves models) and reads it back for
:mod:`silorec.provenance.replay` and for re-merging when a domain joins or leaves.

Layout::

    merge-inputs/inputs.json       order, text_dim, mean lengths, clip scales, files
    merge-inputs/catalogues.npz    one [n_items, text_dim] array per domain
    merge-inputs/item-texts.json   per domain, when a text-encoder merge needs them
    merge-inputs/screened-<d>.npz  a clipped upload (absent: the upload as saved)
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from silorec.provenance.hashing import arrays_sha256, weights_sha256
from silorec.results.io import write_bytes_atomic, write_json_atomic

MERGE_INPUTS_DIR = "merge-inputs"
INPUTS_JSON = "inputs.json"
CATALOGUES_FILE = "catalogues.npz"
ITEM_TEXTS_FILE = "item-texts.json"
MODELS_DIR = "models"
INDIVIDUAL_PREFIX = "individual:"


class MergeInputsError(ValueError):
    """Stored merge inputs that are missing or do not match their recorded hashes."""


@dataclass
class StoredInputs:
    """The merge phase's inputs, as read back from a run."""

    order: list[str]
    models: dict[str, dict[str, np.ndarray]]
    item_embeddings: dict[str, np.ndarray]
    item_texts: dict[str, list[str]]
    mean_lengths: dict[str, float]
    text_dim: int
    hashes: dict[str, str] = field(default_factory=dict)


def save_merge_inputs(
    run_dir: Path,
    order: Sequence[str],
    screened: Mapping[str, Mapping[str, np.ndarray]],
    uploads: Mapping[str, Mapping[str, np.ndarray]],
    item_embeddings: Mapping[str, np.ndarray],
    item_texts: Mapping[str, Sequence[str]],
    mean_lengths: Mapping[str, float],
    text_dim: int,
) -> Path:
    """Write ``merge-inputs/`` for the merges over ``order`` (each file atomically).

    A screened model identical to the upload (not clipped) is referenced, not copied:
    the upload is already in ``models/`` as ``individual:<domain>``."""
    folder = Path(run_dir) / MERGE_INPUTS_DIR
    models: dict[str, dict[str, str]] = {}
    for name in order:
        digest = weights_sha256(screened[name])
        entry = {"sha256": digest, "file": None}
        if name not in uploads or weights_sha256(uploads[name]) != digest:
            buffer = io.BytesIO()
            np.savez(buffer, **screened[name])
            entry["file"] = f"screened-{name}.npz"
            write_bytes_atomic(folder / entry["file"], buffer.getvalue())
        models[name] = entry
    catalogues = {name: np.asarray(item_embeddings[name], dtype=np.float32) for name in order}
    buffer = io.BytesIO()
    np.savez(buffer, **catalogues)
    write_bytes_atomic(folder / CATALOGUES_FILE, buffer.getvalue())
    texts = {name: list(item_texts[name]) for name in order if name in item_texts}
    if texts:
        write_json_atomic(folder / ITEM_TEXTS_FILE, texts)
    record = {
        "order": list(order),
        "text_dim": int(text_dim),
        "mean_lengths": {name: float(mean_lengths.get(name, 0.0)) for name in order},
        "models": models,
        "catalogues": {"file": CATALOGUES_FILE, "sha256": arrays_sha256(catalogues)},
        "item_texts": ITEM_TEXTS_FILE if texts else None,
    }
    return write_json_atomic(folder / INPUTS_JSON, record)


def has_merge_inputs(run_dir: Path) -> bool:
    return (Path(run_dir) / MERGE_INPUTS_DIR / INPUTS_JSON).is_file()


def read_inputs_record(run_dir: Path) -> dict[str, Any]:
    """``merge-inputs/inputs.json`` of a run, or a clear error naming what is missing."""
    path = Path(run_dir) / MERGE_INPUTS_DIR / INPUTS_JSON
    if not path.is_file():
        raise MergeInputsError(
            f"{path}: not found; the run kept no merge inputs (it needs "
            "output.save_models = true, and a silorec that writes merge-inputs/)"
        )
    return json.loads(path.read_text())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, or a clear error naming the file."""
    if not path.is_file():
        raise MergeInputsError(f"{path}: not found")
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def saved_index(run_dir: Path) -> list[dict[str, Any]]:
    """The run's ``models/index.json`` (label, kind, source, file of each saved model);
    empty when the run saved none. The one reader of that file: cards, exports,
    replays and the oracles all go through it."""
    index_path = Path(run_dir) / MODELS_DIR / "index.json"
    return json.loads(index_path.read_text()) if index_path.is_file() else []


def saved_model_file(run_dir: Path, label: str) -> Path:
    """The file ``models/index.json`` records for ``label``."""
    index_path = Path(run_dir) / MODELS_DIR / "index.json"
    if not index_path.is_file():
        raise MergeInputsError(f"{index_path}: not found; the run saved no models")
    matches = [e for e in saved_index(run_dir) if e["label"] == label]
    if not matches:
        raise MergeInputsError(f"{index_path}: no model labelled {label!r}")
    return Path(run_dir) / MODELS_DIR / matches[0]["file"]


def load_saved_model(run_dir: Path, label: str) -> dict[str, np.ndarray]:
    """The weights the run saved under ``label`` (see ``output.save_models``)."""
    return load_npz(saved_model_file(run_dir, label))


def saved_models(run_dir: Path) -> dict[str, tuple[str, str | None, dict[str, np.ndarray]]]:
    """Every model ``models/index.json`` lists: label -> (kind, source, weights)."""
    index_path = Path(run_dir) / MODELS_DIR / "index.json"
    if not index_path.is_file():
        raise MergeInputsError(f"{index_path}: not found; the run saved no models")
    return {
        entry["label"]: (
            entry["kind"],
            entry.get("source"),
            load_npz(Path(run_dir) / MODELS_DIR / entry["file"]),
        )
        for entry in json.loads(index_path.read_text())
    }


def load_merge_inputs(run_dir: Path) -> StoredInputs:
    """Read ``merge-inputs/`` back, checking every hash it recorded."""
    record = read_inputs_record(run_dir)
    folder = Path(run_dir) / MERGE_INPUTS_DIR
    models: dict[str, dict[str, np.ndarray]] = {}
    hashes: dict[str, str] = {}
    for name in record["order"]:
        entry = record["models"][name]
        path = (
            (folder / entry["file"])
            if entry["file"]
            else saved_model_file(run_dir, f"{INDIVIDUAL_PREFIX}{name}")
        )
        weights = load_npz(path)
        if weights_sha256(weights) != entry["sha256"]:
            raise MergeInputsError(
                f"{path}: the merge input of domain {name!r} does not match its recorded "
                "hash (the file changed after the run)"
            )
        models[name] = weights
        hashes[name] = entry["sha256"]
    stored = load_npz(folder / record["catalogues"]["file"])
    embeddings = {name: stored[name] for name in record["order"]}
    if arrays_sha256(embeddings) != record["catalogues"]["sha256"]:
        raise MergeInputsError(f"{folder / CATALOGUES_FILE}: does not match its recorded hash")
    texts: dict[str, list[str]] = {}
    if record.get("item_texts"):
        texts = json.loads((folder / record["item_texts"]).read_text())
    return StoredInputs(
        order=list(record["order"]),
        models=models,
        item_embeddings=embeddings,
        item_texts=texts,
        mean_lengths={k: float(v) for k, v in record["mean_lengths"].items()},
        text_dim=int(record["text_dim"]),
        hashes=hashes,
    )
