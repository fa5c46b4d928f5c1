"""A domain node's work, free of any federation framework: prepare the domain, embed
its item texts, fine-tune a model from given weights, evaluate given models.

Raw interactions stay inside this object. What leaves it is weights, the catalogue's
text embeddings (no identifiers) and scalar metrics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from silorec.data.cache import resolve_cache_dir
from silorec.data.prepare import PreparedDomain, prepare_domain
from silorec.evaluation.protocol import EvalResult, evaluate, evaluation_users
from silorec.models import TextSeqRec, Weights, build_model, get_weights, set_weights
from silorec.runtime import resolve_device, set_threads
from silorec.scenario.schema import DomainSpec, Scenario
from silorec.text import embed_texts, make_encoder
from silorec.training import FineTuneReport, fine_tune


@dataclass(frozen=True)
class TrainOutcome:
    """What a node sends back after local training."""

    weights: Weights
    item_embeddings: np.ndarray
    report: FineTuneReport


class DomainNode:
    """One domain's data and the operations the merge server may ask for."""

    def __init__(
        self,
        scenario: Scenario,
        domain: DomainSpec,
        *,
        data_dir: Path | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.spec = domain
        self.data_dir = data_dir
        self.base_dir = base_dir
        self.cache_dir = resolve_cache_dir(scenario.data.cache_dir, base_dir)
        self.device = resolve_device(scenario.train.device)
        self.preparation_seconds = 0.0
        set_threads(scenario.train.threads)

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def prepared(self) -> PreparedDomain:
        """The domain after import and subsampling (cached on disk across runs)."""
        started = time.perf_counter()
        prepared = prepare_domain(
            self.spec,
            self.scenario.data,
            data_dir=self.data_dir,
            cache_dir=self.cache_dir,
            base_dir=self.base_dir,
        )
        self.preparation_seconds += time.perf_counter() - started
        return prepared

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        """Frozen text embeddings of the catalogue, [n_items, text_dim] float32."""
        started = time.perf_counter()
        texts = self.prepared.domain.items.texts(self.scenario.text.fields)
        embeddings = embed_texts(texts, make_encoder(self.scenario.text), self.cache_dir)
        self.preparation_seconds += time.perf_counter() - started
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    @cached_property
    def _text_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.item_embeddings).to(self.device)

    def describe(self) -> dict[str, float]:
        """Prepare everything and report sizes (scalars only)."""
        domain = self.prepared.domain
        stats = {
            "n_users": float(domain.n_users),
            "n_items": float(domain.n_items),
            "n_interactions": float(domain.n_interactions),
            "n_evaluable_users": float(len(domain.evaluable_users())),
            "raw_users": float(self.prepared.raw_stats.users),
            "raw_items": float(self.prepared.raw_stats.items),
            "raw_interactions": float(self.prepared.raw_stats.interactions),
            "text_dim": float(self.item_embeddings.shape[1]),
        }
        stats["preparation_seconds"] = self.preparation_seconds
        return stats

    def _model(self, weights: Mapping[str, np.ndarray]) -> TextSeqRec:
        model = build_model(self.scenario.model, self.item_embeddings.shape[1], seed=0)
        set_weights(model, weights)
        return model.to(self.device)

    def train(
        self, weights: Weights, *, epochs: int | None, early_stopping: bool, label: str
    ) -> TrainOutcome:
        """Fine-tune from ``weights`` on this domain; returns the new weights."""
        model = self._model(weights)
        report = fine_tune(
            model,
            self.prepared.domain,
            self._text_tensor,
            self.scenario.train,
            self.scenario.evaluation,
            epochs=epochs,
            early_stopping=early_stopping,
            label=label,
        )
        return TrainOutcome(get_weights(model), self.item_embeddings, report)

    def evaluate(
        self, models: Mapping[str, Weights], splits: Sequence[str]
    ) -> dict[str, dict[str, EvalResult]]:
        """Evaluate each model on each split, all on the same users."""
        settings = self.scenario.evaluation
        users = evaluation_users(self.prepared.domain, settings.max_users, self.scenario.seed)
        results: dict[str, dict[str, EvalResult]] = {}
        for label, weights in models.items():
            model = self._model(weights)
            results[label] = {
                split: evaluate(
                    model, self.prepared.domain, self._text_tensor, split, settings, users
                )
                for split in splits
            }
        return results
