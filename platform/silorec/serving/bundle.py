"""An exported model: load it and recommend from any catalogue with item text.

An export folder holds ``model.safetensors`` (the weights), ``config.json`` (an
:class:`ExportConfig`: the model and text-encoder settings it needs, nothing of the
scenario or the run), and the model's merge card. :func:`load` gives a
:class:`LoadedModel`; :meth:`LoadedModel.prepare` encodes a catalogue once, and
:meth:`LoadedModel.recommend` then ranks every item for a history (a list of item
ids, oldest first) the way the evaluation protocol ranks them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from silorec.models import (
    ItemInputs,
    Recommender,
    build_model,
    catalogue_inputs,
    set_weights,
)
from silorec.models.inputs import pad_left
from silorec.models.item_tokens import tokenize_items
from silorec.provenance.hashing import weights_sha256
from silorec.runtime import resolve_device
from silorec.scenario.schema import ModelSettings, TextSettings
from silorec.serving.catalogue import Catalogue
from silorec.text.cache import embed_texts
from silorec.text.encoders import make_encoder

EXPORT_FORMAT = "silorec-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ExportError(ValueError):
    """An export folder that cannot be written or loaded; the message names the file."""


class RecommendError(ValueError):
    """A request that cannot be answered (unknown items, empty history, bad k)."""


class ExportConfig(BaseModel):
    """``config.json`` of an export: everything needed to rebuild and run the model."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["silorec-model"] = EXPORT_FORMAT
    format_version: Literal[1] = FORMAT_VERSION
    label: str = Field(..., description="The model's label in its run, e.g. 'ties(...)'.")
    kind: str = Field(..., description="base, individual, merge, fedavg, weave, ...")
    model: ModelSettings
    text: TextSettings
    text_dim: int = Field(..., ge=1, description="Size of the frozen item-text embeddings.")
    text_encoder: dict[str, str] = Field(
        default_factory=dict, description="Which text encoder (and package) items need."
    )
    exclude_history: bool = Field(
        False, description="Default for recommend: drop the history's own items."
    )
    weights_sha256: str
    silorec_version: str
    source: dict[str, Any] = Field(default_factory=dict, description="The run it came from.")


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float


@dataclass(frozen=True)
class PreparedCatalogue:
    """A catalogue encoded once by one model: its item inputs and representations."""

    catalogue: Catalogue
    item_inputs: ItemInputs
    item_repr: torch.Tensor


class LoadedModel:
    """A recommender loaded from an export folder."""

    def __init__(self, config: ExportConfig, model: Recommender, device: torch.device) -> None:
        self.config = config
        self.model = model.eval()
        self.device = device
        self._prepared: dict[int, PreparedCatalogue] = {}

    @property
    def label(self) -> str:
        return self.config.label

    # -- catalogues -------------------------------------------------------------

    @torch.no_grad()
    def prepare(self, catalogue: Catalogue) -> PreparedCatalogue:
        """Encode ``catalogue``'s items (once per catalogue object and model)."""
        hit = self._prepared.get(id(catalogue))
        if hit is not None and hit.catalogue is catalogue:
            return hit
        if self.config.model.kind == "text-seq":
            encoder = make_encoder(self.config.text)
            embeddings = embed_texts(catalogue.texts, encoder, cache_dir=None)
            if embeddings.shape[1] != self.config.text_dim:
                raise ExportError(
                    f"the text encoder gives {embeddings.shape[1]}-d embeddings, the model "
                    f"expects {self.config.text_dim}"
                )
            inputs = catalogue_inputs(self.config.model, embeddings, None)
        else:
            inputs = tokenize_items(catalogue.texts, self.config.model.max_item_tokens)
        inputs = inputs.to(self.device)
        prepared = PreparedCatalogue(catalogue, inputs, self.model.encode_items(inputs))
        self._prepared = {id(catalogue): prepared}  # one catalogue at a time stays warm
        return prepared

    # -- recommending -------------------------------------------------------------

    def recommend(
        self,
        history: Sequence[str],
        catalogue: Catalogue,
        k: int = 10,
        exclude_history: bool | None = None,
    ) -> list[Recommendation]:
        """The ``k`` best next items after ``history`` (item ids, oldest first)."""
        return self.recommend_batch([history], catalogue, k, exclude_history)[0]

    @torch.no_grad()
    def recommend_batch(
        self,
        histories: Sequence[Sequence[str]],
        catalogue: Catalogue,
        k: int = 10,
        exclude_history: bool | None = None,
    ) -> list[list[Recommendation]]:
        """:meth:`recommend` for many histories at once (one forward pass per batch)."""
        prepared = self.prepare(catalogue)
        exclude = self.config.exclude_history if exclude_history is None else exclude_history
        indices = [self._indices(h, catalogue, row) for row, h in enumerate(histories)]
        _check_k(k, len(catalogue), max(len(i) for i in indices) if exclude and indices else 0)
        out: list[list[Recommendation]] = []
        batch = 256
        for start in range(0, len(indices), batch):
            chunk = indices[start : start + batch]
            scores = self.scores(chunk, prepared)
            if exclude:
                for row, items in enumerate(chunk):
                    scores[row, torch.from_numpy(items).to(scores.device)] = float("-inf")
            top = torch.topk(scores, k, dim=1)
            for values, items in zip(top.values.cpu().tolist(), top.indices.cpu().tolist(),
                                     strict=True):  # fmt: skip
                out.append([Recommendation(catalogue.ids[i], float(v))
                            for i, v in zip(items, values, strict=True)])  # fmt: skip
        return out

    def scores(self, histories: Sequence[np.ndarray], prepared: PreparedCatalogue) -> torch.Tensor:
        """[B, n_items] scores of every catalogue item after each history (item
        indices of the prepared catalogue), as the evaluation protocol scores them."""
        max_len = self.config.model.max_len
        width = max(min(max((len(h) for h in histories), default=1), max_len), 1)
        inputs = torch.from_numpy(pad_left([h[-max_len:] for h in histories], width))
        states = self.model.encode_histories(
            prepared.item_inputs, prepared.item_repr, inputs.to(self.device)
        )
        return self.model.scores(states, prepared.item_repr)

    @staticmethod
    def _indices(history: Sequence[str], catalogue: Catalogue, row: int) -> np.ndarray:
        if isinstance(history, str):
            raise RecommendError("a history is a list of item ids, not one string")
        if len(history) == 0:
            raise RecommendError(f"history {row}: empty (give at least one item id)")
        unknown = [str(i) for i in history if str(i) not in catalogue.index]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5]) + (" …" if len(unknown) > 5 else "")
            raise RecommendError(
                f"history {row}: {len(unknown)} item id(s) not in the catalogue "
                f"{catalogue.source}: {shown}"
            )
        return np.fromiter((catalogue.index[str(i)] for i in history), dtype=np.int64)


def _check_k(k: int, n_items: int, excluded: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RecommendError(f"k must be a positive integer, got {k!r}")
    if k > n_items - excluded:
        raise RecommendError(
            f"k = {k} is more than the {n_items - excluded} items the catalogue can offer"
        )


def read_config(folder: Path) -> ExportConfig:
    """``config.json`` of an export folder, validated."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise ExportError(f"{path}: not found; {folder} is not a silorec model export")
    try:
        return ExportConfig.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ExportError(f"{path}: not a silorec model config: {problems}") from None


def load(folder: str | Path, device: str = "auto") -> LoadedModel:
    """Load an export folder (see :func:`silorec.serving.export.export_model`); the
    weights must match the hash in its config."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = read_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ExportError(f"{weights_path}: not found")
    try:
        weights = load_file(str(weights_path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several kinds
        raise ExportError(f"{weights_path}: cannot read safetensors: {exc}") from None
    if weights_sha256(weights) != config.weights_sha256:
        raise ExportError(f"{weights_path}: the weights do not match config.json's hash")
    return build_loaded(config, weights, device, where=str(weights_path))


def build_loaded(
    config: ExportConfig, weights: dict[str, np.ndarray], device: str = "auto", where: str = ""
) -> LoadedModel:
    """A :class:`LoadedModel` from a config and its weights (checked to fit)."""
    target = resolve_device(device)
    model = build_model(config.model, config.text_dim, seed=0)
    try:
        set_weights(model, weights)
    except ValueError as exc:
        raise ExportError(
            f"{where or config.label}: weights do not fit the configured model: {exc}"
        ) from None
    return LoadedModel(config, model.to(target), target)
