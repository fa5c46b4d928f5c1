"""Local fine-tuning of the recommender on one domain, with early stopping.

One loop for every model kind; each kind has its objective (:func:`objective_for`).
text-seq: next-item prediction at every position of each user's training sequence,
with a full softmax over all items of the domain (cosine scores over a temperature);
text-encoder: a sampled softmax (:mod:`silorec.training.sampled_softmax`). Validation
NDCG@10 is measured after every epoch on a fixed, seeded sample of users, and the best
weights seen (the starting point included) are the ones kept.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from silorec.data.domain import DomainData
from silorec.evaluation.protocol import evaluate, evaluation_users
from silorec.models import ItemInputs, Recommender, TextEncoderRec
from silorec.models.inputs import length_buckets, pad_left
from silorec.models.text_seq import PAD, TextSeqRec
from silorec.progress import StepProgress
from silorec.scenario.schema import EvaluationSettings, TrainSettings
from silorec.training.regimes import training_regime
from silorec.training.sampled_softmax import SampledSoftmaxObjective

EARLY_STOPPING_METRIC = "ndcg@10"


@dataclass
class FineTuneReport:
    """What happened during fine-tuning (all scalars: safe to send to the server)."""

    epochs_run: int
    best_epoch: int
    best_valid_ndcg10: float | None
    train_seconds: float
    eval_seconds: float
    n_train_sequences: int
    sequences_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)
    #: The node-side seed the training used (``train.seed``, replaced by a run's seed).
    seed: int = 0

    def scalars(self) -> dict[str, float]:
        """Flat scalar metrics for the node's reply."""
        out = {
            "epochs_run": float(self.epochs_run),
            "best_epoch": float(self.best_epoch),
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "n_train_sequences": float(self.n_train_sequences),
            "sequences_per_second": self.sequences_per_second,
            "train_seed": float(self.seed),
        }
        if self.best_valid_ndcg10 is not None:
            out["best_valid_ndcg@10"] = self.best_valid_ndcg10
        if self.history:
            out["final_train_loss"] = self.history[-1]["loss"]
        return out


def training_examples(
    domain: DomainData, max_len: int, users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets, both [N, max_len], left-padded with PAD.

    One example per user (of ``users``, default all) whose training sequence has at
    least two items: its last ``max_len + 1`` items, shifted by one. One example per
    user is what makes DP-SGD's per-example guarantee a per-user guarantee.
    """
    inputs, targets = [], []
    for user in range(domain.n_users) if users is None else users.tolist():
        sequence = domain.train_sequence(user)[-(max_len + 1) :]
        if len(sequence) >= 2:
            inputs.append(sequence[:-1])
            targets.append(sequence[1:])
    return pad_left(inputs, max_len), pad_left(targets, max_len)


#: Most logits (positions x catalogue items) one training batch holds at once: above
#: it the exact full-softmax loss is computed in chunks of positions, each recomputed
#: in the backward pass (activation checkpointing), so a 100,000-item catalogue trains
#: in bounded memory. Below it (every catalogue up to ~16,000 items at batch 128 and
#: length 16) the loss is computed in one piece, exactly as before.
LOGITS_BUDGET = 1 << 25


def next_item_loss(
    model: TextSeqRec,
    text_embeddings: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    logits_budget: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the next item over all non-padded positions (the full
    softmax over the catalogue; chunked past ``logits_budget``, default
    :data:`LOGITS_BUDGET`; same value)."""
    budget = LOGITS_BUDGET if logits_budget is None else logits_budget
    states, item_repr = model(text_embeddings, inputs)
    positions = targets != PAD
    states, goal = states[positions], targets[positions]
    n_items = item_repr.shape[0]
    if states.shape[0] * n_items <= budget:
        return F.cross_entropy(model.scores(states, item_repr), goal)
    chunk = max(1, budget // n_items)

    def summed(part: torch.Tensor, items: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model.scores(part, items), wanted, reduction="sum")

    total = sum(
        checkpoint(summed, states[i : i + chunk], item_repr, goal[i : i + chunk],
                   use_reentrant=False)
        for i in range(0, states.shape[0], chunk)
    )  # fmt: skip
    return total / goal.shape[0]


def per_example_losses(
    model: TextSeqRec, item_repr: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """[B]: each example's mean next-item cross-entropy over its non-padded positions.

    Written without boolean indexing (its shapes depend on the data), so that
    ``torch.func.vmap`` can run it one example at a time for DP-SGD; the membership
    inference attack scores users with it too.
    """
    states = model.encode_sequences(item_repr, inputs)
    logits = model.scores(states, item_repr)  # [B, L, n_items]
    positions = targets != PAD
    losses = F.cross_entropy(
        logits.transpose(1, 2), torch.where(positions, targets, 0), reduction="none"
    )
    return (losses * positions).sum(dim=1) / positions.sum(dim=1).clamp(min=1)


class TrainingObjective(Protocol):
    """What the fine-tuning loop needs of a model kind's objective on one domain."""

    @property
    def n_examples(self) -> int:
        """Training examples per epoch."""
        ...

    def epoch_batches(self, rng: np.random.Generator) -> Sequence[Any]:
        """One epoch's batches, in the order they train (all randomness from ``rng``)."""
        ...

    def loss(self, batch: Any) -> torch.Tensor:
        """The batch's mean loss, with gradients."""
        ...


class NextItemObjective:
    """text-seq: the next item at every position of each user's training sequence
    (:func:`training_examples`), full softmax (:func:`next_item_loss`); batches of
    similar length, trimmed to what they need."""

    def __init__(
        self,
        model: TextSeqRec,
        domain: DomainData,
        item_inputs: torch.Tensor,
        batch_size: int,
        users: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.item_inputs = item_inputs
        self.batch_size = batch_size
        inputs, targets = training_examples(domain, model.settings.max_len, users)
        self.lengths = (inputs != PAD).sum(axis=1)
        self.inputs = torch.from_numpy(inputs).to(item_inputs.device)
        self.targets = torch.from_numpy(targets).to(item_inputs.device)

    @property
    def n_examples(self) -> int:
        return len(self.lengths)

    def epoch_batches(self, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
        return length_buckets(self.lengths, self.batch_size, rng)

    def loss(self, batch: tuple[np.ndarray, int]) -> torch.Tensor:
        rows, width = batch
        index = torch.from_numpy(rows).to(self.inputs.device)
        return next_item_loss(
            self.model,
            self.item_inputs,
            self.inputs[index, -width:],
            self.targets[index, -width:],
        )


def objective_for(
    model: Recommender,
    domain: DomainData,
    item_inputs: ItemInputs,
    batch_size: int,
    users: np.ndarray | None = None,
) -> TrainingObjective:
    """The training objective of ``model``'s kind on ``domain`` (``users``: only
    theirs; default all)."""
    if isinstance(model, TextEncoderRec):
        return SampledSoftmaxObjective(model, domain, item_inputs, batch_size, users)
    return NextItemObjective(model, domain, item_inputs, batch_size, users)


def fine_tune(
    model: Recommender,
    domain: DomainData,
    item_inputs: ItemInputs,
    settings: TrainSettings,
    eval_settings: EvaluationSettings,
    *,
    epochs: int | None = None,
    early_stopping: bool = True,
    label: str = "fine-tune",
    users: np.ndarray | None = None,
) -> FineTuneReport:
    """Train ``model`` in place on ``domain``; returns a report.

    ``epochs`` overrides ``settings.epochs`` (FedAvg rounds train a fixed, small number
    of epochs without early stopping). With early stopping the model ends holding the
    best weights seen on validation. ``settings.regime`` chooses what trains (see
    :mod:`silorec.training.regimes`). ``users`` restricts training and validation to
    those users (the others are membership-inference non-members and must stay
    unseen). Seeded by ``settings.seed``; the caller's global random state is left as
    it was. ``item_inputs``: what ``model`` encodes the domain's items from (see
    :mod:`silorec.models`).
    """
    device = item_inputs.device
    devices = [device] if device.type == "cuda" else []
    with (
        torch.random.fork_rng(devices=devices),
        training_regime(model, settings.regime, lora_rank=settings.lora_rank,
                        proximal_mu=settings.proximal_mu) as penalty,
    ):  # fmt: skip
        return _fine_tune(
            model,
            domain,
            item_inputs,
            settings,
            eval_settings,
            epochs=settings.epochs if epochs is None else epochs,
            early_stopping=early_stopping,
            label=label,
            users=users,
            penalty=penalty,
        )


def _fine_tune(
    model: Recommender,
    domain: DomainData,
    item_inputs: ItemInputs,
    settings: TrainSettings,
    eval_settings: EvaluationSettings,
    *,
    epochs: int,
    early_stopping: bool,
    label: str,
    users: np.ndarray | None,
    penalty: Callable[[], torch.Tensor] | None,
) -> FineTuneReport:
    """:func:`fine_tune` inside a forked random state (the caller's is untouched) and
    the training regime (``penalty``: its extra loss term, if any)."""
    objective = objective_for(model, domain, item_inputs, settings.batch_size, users)
    if objective.n_examples == 0:
        raise ValueError(f"domain '{domain.name}' has no training sequence of 2+ items")
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    valid_users = evaluation_users(domain, settings.max_valid_users, settings.seed)
    if users is not None:
        valid_users = valid_users[np.isin(valid_users, users)]
    track = early_stopping and len(valid_users) > 0

    def validate() -> float:
        result = evaluate(model, domain, item_inputs, "valid", eval_settings, valid_users)
        return result.metrics[EARLY_STOPPING_METRIC]

    eval_seconds = 0.0
    best_score, best_epoch, best_state = None, 0, None
    if track:
        started = time.perf_counter()
        best_score, best_state = validate(), copy.deepcopy(model.state_dict())
        eval_seconds += time.perf_counter() - started

    history: list[dict[str, float]] = []
    train_seconds = 0.0
    stale = 0
    progress = StepProgress(epochs, f"{domain.name}: {label}", enabled=settings.progress)
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        total, batches = 0.0, 0
        for batch in objective.epoch_batches(rng):
            loss = objective.loss(batch)
            if penalty is not None:
                loss = loss + penalty()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        train_seconds += time.perf_counter() - started
        record = {"epoch": float(epoch), "loss": total / batches}
        if track:
            started = time.perf_counter()
            score = validate()
            eval_seconds += time.perf_counter() - started
            record["valid_ndcg@10"] = score
            if score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        history.append(record)
        progress.step(epoch, {k: v for k, v in record.items() if k != "epoch"})
        if track and stale >= settings.patience:
            break
    progress.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    epochs_run = len(history)
    return FineTuneReport(
        epochs_run=epochs_run,
        best_epoch=best_epoch if track else epochs_run,
        best_valid_ndcg10=best_score,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        n_train_sequences=objective.n_examples,
        sequences_per_second=objective.n_examples * epochs_run / max(train_seconds, 1e-9),
        history=history,
        seed=settings.seed,
    )
