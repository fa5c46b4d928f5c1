"""A domain node's work, free of any federation framework: prepare the domain, embed
its item texts, fine-tune a model from given weights, evaluate given models.

Raw interactions stay inside this object. What leaves it is weights, the catalogue's
text embeddings (no identifiers), scalar metrics and, only in a text-encoder scenario
with a learned merge, the catalogue's item texts. With differential privacy
(:mod:`silorec.node.privacy`) every upload is accounted in the domain's privacy ledger
before it leaves, and refused when it would exceed the budget.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from silorec.data.cache import resolve_cache_dir
from silorec.data.prepare import PreparedDomain, prepare_domain
from silorec.evaluation.protocol import EvalResult, draw_negatives, evaluate, evaluation_users
from silorec.models import (
    ItemInputs,
    Recommender,
    Weights,
    build_model,
    catalogue_inputs,
    get_weights,
    set_weights,
)
from silorec.models.lora import adapter_attached, fold_adapter
from silorec.node.canaries import Canaries, canaries_for, plant_canaries
from silorec.node.floor import NodeFloor
from silorec.node.guard import DomainScanners, NodeGuard
from silorec.node.privacy import NodePrivacy, ReleasePlan, audit_scalars, ledger_scalars
from silorec.privacy import PrivacyLedger, Release, ledger_path
from silorec.results import now_iso
from silorec.runtime import resolve_device, set_threads, use_deterministic_algorithms
from silorec.scenario.schema import DomainSpec, Scenario, TrainSettings
from silorec.text import embed_texts, make_encoder
from silorec.training import FineTuneReport, fine_tune
from silorec.training.dp_finetune import DpSgdParams, dp_fine_tune


@dataclass(frozen=True)
class TrainOutcome:
    """What a node sends back after local training: the released weights (with DP,
    the private ones), the catalogue embeddings, the reply's scalar metrics and, when
    the scenario uploads them, the catalogue's item texts."""

    weights: Weights
    item_embeddings: np.ndarray
    report: FineTuneReport
    metrics: dict[str, float]
    item_texts: list[str] | None = None
    #: The upload is a LoRA adapter (``weights`` holds its tensors), not a model.
    adapter: bool = False


class DomainNode:
    """One domain's data and the operations the merge server may ask for."""

    def __init__(
        self,
        scenario: Scenario,
        domain: DomainSpec,
        *,
        data_dir: Path | None = None,
        base_dir: Path | None = None,
        floor: NodeFloor | None = None,
    ) -> None:
        self.scenario = scenario
        self.floor = floor or NodeFloor()
        self._evaluate_requests: dict[str, int] = {}  # per run id
        self.spec = domain
        self.data_dir = data_dir
        self.base_dir = base_dir
        self.cache_dir = resolve_cache_dir(scenario.data.cache_dir, base_dir)
        self.device = resolve_device(scenario.train.device)
        self.preparation_seconds = 0.0
        self.canaries = Canaries([], [])  # the planted canary users, once data is prepared
        set_threads(scenario.train.threads)
        use_deterministic_algorithms()

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def prepared(self) -> PreparedDomain:
        """The domain after import and subsampling (cached on disk across runs), with
        the audit's canary users planted in it."""
        started = time.perf_counter()
        prepared = prepare_domain(
            self.spec,
            self.scenario.data,
            data_dir=self.data_dir,
            cache_dir=self.cache_dir,
            base_dir=self.base_dir,
        )
        self.canaries = canaries_for(self.scenario, prepared.domain)
        prepared = replace(prepared, domain=plant_canaries(prepared.domain, self.canaries))
        self.preparation_seconds += time.perf_counter() - started
        return prepared

    @property
    def data_ready(self) -> bool:
        """Whether the domain's data is loaded (checked without loading it)."""
        return "prepared" in self.__dict__

    @cached_property
    def scanners(self) -> DomainScanners:
        """Leakage detectors over this domain's users, items and canaries (they need
        the data only: an error reason can be redacted before embeddings exist)."""
        return DomainScanners.for_domain(
            self.prepared.domain, self.canaries, self.scenario.audit.min_identifier_length
        )

    @cached_property
    def guard(self) -> NodeGuard:
        """The wire policy and leakage detectors every reply of this node must pass."""
        return NodeGuard.for_node(
            self.scenario,
            self.prepared.domain,
            self.item_embeddings.shape[1],
            self.scanners,
            max_models=self.floor.max_evaluate_models,
        )

    @cached_property
    def item_texts(self) -> list[str]:
        """The catalogue's item texts, one per item (the scenario's text fields)."""
        return self.prepared.domain.items.texts(self.scenario.text.fields)

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        """Frozen text embeddings of the catalogue, [n_items, text_dim] float32."""
        started = time.perf_counter()
        embeddings = embed_texts(self.item_texts, make_encoder(self.scenario.text), self.cache_dir)
        self.preparation_seconds += time.perf_counter() - started
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    @cached_property
    def _text_tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.item_embeddings).to(self.device)

    @cached_property
    def _item_inputs(self) -> ItemInputs:
        """What the scenario's model encodes this catalogue from (see silorec.models)."""
        inputs = catalogue_inputs(self.scenario.model, self.item_embeddings, self.item_texts)
        return inputs.to(self.device)

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

    def _model(self, weights: Mapping[str, np.ndarray]) -> Recommender:
        model = build_model(self.scenario.model, self.item_embeddings.shape[1], seed=0)
        set_weights(model, weights)
        return model.to(self.device)

    @cached_property
    def privacy(self) -> NodePrivacy:
        """Membership split, noise calibration and release of this domain."""
        return NodePrivacy(self.scenario, self.prepared.domain)

    def ledger(self, directory: Path) -> PrivacyLedger:
        """This domain's privacy ledger in the node's audit folder ``directory``."""
        return PrivacyLedger.open(ledger_path(directory, self.name), self.name, self.privacy.delta)

    def privacy_report(self, ledger_dir: Path) -> dict[str, float]:
        """The ledger's ε so far, as scalars (what an unseen domain reports)."""
        return ledger_scalars(self.ledger(ledger_dir))

    def train(
        self,
        weights: Weights,
        *,
        epochs: int | None,
        early_stopping: bool,
        label: str,
        ledger_dir: Path,
        run: str,
        adapter: Weights | None = None,
    ) -> TrainOutcome:
        """Fine-tune from ``weights`` on this domain; returns the weights to upload.

        With an ``adapter`` (weaving, see :mod:`silorec.weaving`) only the adapter's
        tensors train, on top of the frozen ``weights``, and only they are uploaded:
        no model, no catalogue.

        The node's floor is checked first (:class:`~silorec.node.floor.FloorRefused`).
        The upload's privacy cost is known before training: if it would take the
        ledger over the tighter of ``privacy.budget_epsilon`` and the floor's
        ``max-epsilon`` this raises :class:`~silorec.privacy.PrivacyBudgetExceeded`
        and nothing is trained; otherwise the release is charged to the ledger (under
        its lock) before training starts.
        """
        epochs = self.scenario.train.epochs if epochs is None else epochs
        settings = self.scenario.privacy
        self.floor.check_train(
            self.name,
            epochs=epochs,
            mechanism=settings.mechanism,
            uploads_item_texts=self.scenario.uploads_item_texts,
        )
        users = self.privacy.training_users
        self.floor.check_users(
            self.name,
            "training metrics",
            self.prepared.domain.n_users if users is None else len(users),
        )
        plan = self.privacy.plan(epochs)
        ledger = PrivacyLedger.charge(
            ledger_path(ledger_dir, self.name),
            self.name,
            self.privacy.delta,
            Release(run, label, plan.mechanism, plan.gaussian, now_iso()),
            self.floor.budget(settings.budget_epsilon),
        )
        model = self._model(weights)
        if adapter is not None:
            return self._train_adapter(model, weights, adapter, plan, ledger, epochs,
                                       early_stopping, label)  # fmt: skip
        report = self._fit(model, plan, epochs, early_stopping, label)
        released = self.privacy.release(plan, weights, get_weights(model))
        metrics = self.privacy.reply_scalars(plan, report.scalars(), ledger)
        if self.privacy.membership is not None:
            audit = self.privacy.membership_audit(
                self._model(released), self._text_tensor, self.scenario.evaluation.batch_size
            )
            metrics.update(audit_scalars(audit))
        texts = self.item_texts if self.scenario.uploads_item_texts else None
        return TrainOutcome(released, self.item_embeddings, report, metrics, texts)

    def _train_adapter(
        self,
        model: Recommender,
        base: Weights,
        adapter: Weights,
        plan: ReleasePlan,
        ledger: PrivacyLedger,
        epochs: int,
        early_stopping: bool,
        label: str,
    ) -> TrainOutcome:
        """Train ``adapter`` on the frozen ``model`` (the regime is the adapter's: only
        its tensors train); release it like any upload (the Gaussian mechanism noises
        the adapter's change)."""
        weave = self.scenario.weave
        settings = self.scenario.train.model_copy(update={"regime": "full"})
        with adapter_attached(model, adapter, weave.alpha, weave.layers) as current:
            report = self._fit(model, plan, epochs, early_stopping, label, settings)
            trained = current()
        released = self.privacy.release(plan, adapter, trained)
        metrics = self.privacy.reply_scalars(plan, report.scalars(), ledger)
        if self.privacy.membership is not None:
            folded = self._model(fold_adapter(base, released, weave.alpha))
            audit = self.privacy.membership_audit(
                folded, self._text_tensor, self.scenario.evaluation.batch_size
            )
            metrics.update(audit_scalars(audit))
        return TrainOutcome(released, self.item_embeddings, report, metrics, adapter=True)

    def _fit(
        self,
        model: Recommender,
        plan: ReleasePlan,
        epochs: int,
        early_stopping: bool,
        label: str,
        settings: TrainSettings | None = None,
    ) -> FineTuneReport:
        """Train ``model`` in place: DP-SGD (fixed epochs) or the usual fine-tuning,
        on the users training may see (``settings``: instead of the scenario's
        train settings)."""
        settings = settings or self.scenario.train
        if plan.schedule is not None:
            return dp_fine_tune(
                model,
                self.prepared.domain,
                self._text_tensor,
                settings,
                DpSgdParams(plan.noise_multiplier, self.scenario.privacy.max_grad_norm),
                epochs=epochs,
                users=self.privacy.training_users,
                label=label,
            )
        return fine_tune(
            model,
            self.prepared.domain,
            self._item_inputs,
            settings,
            self.scenario.evaluation,
            epochs=epochs,
            early_stopping=early_stopping,
            label=label,
            users=self.privacy.training_users,
        )

    def evaluate(
        self, models: Mapping[str, Weights], splits: Sequence[str], *, run: str = ""
    ) -> dict[str, dict[str, EvalResult]]:
        """Evaluate each model on each split, all on the same users, within the node's
        floor: a bounded number of requests per ``run`` and of models per request, and
        at least ``min-users`` users behind every metric."""
        served = self._evaluate_requests.get(run, 0)
        self.floor.check_evaluate(self.name, served=served, n_models=len(models))
        settings = self.scenario.evaluation
        users = evaluation_users(self.prepared.domain, settings.max_users, settings.users_seed)
        self.floor.check_users(self.name, "evaluation metrics", len(users))
        self._evaluate_requests[run] = served + 1
        # Sampled negatives depend on the user and split only: drawn once for all models.
        negatives = {split: draw_negatives(self.prepared.domain, users, split, settings)
                     for split in splits}  # fmt: skip
        results: dict[str, dict[str, EvalResult]] = {}
        for label, weights in models.items():
            model = self._model(weights)
            results[label] = {
                split: evaluate(model, self.prepared.domain, self._item_inputs, split, settings,
                                users, negatives[split])
                for split in splits
            }  # fmt: skip
        return results
