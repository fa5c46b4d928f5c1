"""Local fine-tuning with DP-SGD: the private counterpart of :func:`fine_tune`.

Each step takes a Poisson sample of the training examples (one per user, so the
guarantee is per user), computes every sampled example's exact gradient of the whole
model (:mod:`silorec.training.per_sample`), clips each to ``max_grad_norm``, adds
Gaussian noise to their sum and lets Adam take the noisy mean
(:mod:`silorec.privacy.dp_sgd`). Adam and weight decay only post-process the noisy
gradients, so they cost no privacy.

There is no validation and no early stopping: choosing the epoch by validation NDCG
would make the released model depend on the data through a channel the accountant
does not count. The model trains a fixed number of epochs and the last weights are
the release.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from silorec.data.domain import DomainData
from silorec.models.text_seq import PAD, TextSeqRec
from silorec.privacy.dp_sgd import DpSgdSchedule, add_clipped, entropy_generator, noisy_mean
from silorec.progress import StepProgress
from silorec.scenario.schema import TrainSettings
from silorec.training.finetune import FineTuneReport, training_examples
from silorec.training.per_sample import per_example_gradients

#: Examples whose per-example gradients are computed together. Within a Poisson
#: sample, examples are grouped by length so each group is padded only to its own
#: longest sequence (per-example gradients do not depend on the grouping); 64 bounds
#: memory at a few hundred MB for a 2,000-item catalogue.
CHUNK_SIZE = 64


@dataclass(frozen=True)
class DpSgdParams:
    """Noise multiplier σ and per-example clipping norm C of DP-SGD."""

    noise_multiplier: float
    max_grad_norm: float


def dp_schedule(
    domain: DomainData, max_len: int, batch_size: int, users: np.ndarray | None = None
) -> DpSgdSchedule:
    """The sampling schedule DP-SGD will follow on ``domain`` (known before training,
    so the node can account for a release before making it)."""
    inputs, _ = training_examples(domain, max_len, users)
    return _schedule(domain, len(inputs), batch_size)


def _schedule(domain: DomainData, n_examples: int, batch_size: int) -> DpSgdSchedule:
    if n_examples == 0:
        raise ValueError(f"domain '{domain.name}' has no training sequence of 2+ items")
    return DpSgdSchedule(n_examples, batch_size)


def dp_fine_tune(
    model: TextSeqRec,
    domain: DomainData,
    text_embeddings: torch.Tensor,
    settings: TrainSettings,
    params: DpSgdParams,
    *,
    epochs: int,
    users: np.ndarray | None = None,
    label: str = "dp-sgd",
    sampling_rng: np.random.Generator | None = None,
    noise_generator: torch.Generator | None = None,
) -> FineTuneReport:
    """Train ``model`` in place with DP-SGD for exactly ``epochs`` epochs of
    :func:`dp_schedule`'s steps.

    ``sampling_rng`` and ``noise_generator`` are for tests only: by default both are
    seeded from OS entropy. Dropout is seeded by ``settings.seed``; the caller's
    global random state is left as it was.
    """
    device = text_embeddings.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        return _dp_fine_tune(
            model,
            domain,
            text_embeddings,
            settings,
            params,
            epochs=epochs,
            users=users,
            label=label,
            sampling_rng=sampling_rng or np.random.default_rng(),
            noise_generator=noise_generator or entropy_generator(device),
        )


def _dp_fine_tune(
    model: TextSeqRec,
    domain: DomainData,
    text_embeddings: torch.Tensor,
    settings: TrainSettings,
    params: DpSgdParams,
    *,
    epochs: int,
    users: np.ndarray | None,
    label: str,
    sampling_rng: np.random.Generator,
    noise_generator: torch.Generator,
) -> FineTuneReport:
    """:func:`dp_fine_tune` inside a forked random state."""
    device = text_embeddings.device
    inputs_np, targets_np = training_examples(domain, model.settings.max_len, users)
    schedule = _schedule(domain, len(inputs_np), settings.batch_size)
    lengths = (inputs_np != PAD).sum(axis=1)
    inputs = torch.from_numpy(inputs_np).to(device)
    targets = torch.from_numpy(targets_np).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    history: list[dict[str, float]] = []
    train_seconds = 0.0
    progress = StepProgress(epochs, f"{domain.name}: {label}", enabled=settings.progress)
    model.train()
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        loss_sum, n_seen = 0.0, 0
        for _ in range(schedule.steps_per_epoch):
            total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
            for rows, width in _length_groups(schedule.poisson_sample(sampling_rng), lengths):
                rows_t = torch.from_numpy(rows).to(device)
                grads, losses = per_example_gradients(
                    model, text_embeddings, inputs[rows_t, -width:], targets[rows_t, -width:]
                )
                add_clipped(total, grads, params.max_grad_norm)
                loss_sum += float(losses.sum())
                n_seen += len(rows)
            noisy = noisy_mean(
                total,
                noise_multiplier=params.noise_multiplier,
                max_grad_norm=params.max_grad_norm,
                expected_batch_size=schedule.expected_batch_size,
                generator=noise_generator,
            )
            for name, parameter in model.named_parameters():
                parameter.grad = noisy[name]
            optimizer.step()
        train_seconds += time.perf_counter() - started
        record = {"epoch": float(epoch), "loss": loss_sum / max(n_seen, 1)}
        history.append(record)
        progress.step(epoch, {"loss": record["loss"]})
    progress.close()
    optimizer.zero_grad(set_to_none=True)
    return FineTuneReport(
        epochs_run=epochs,
        best_epoch=epochs,
        best_valid_ndcg10=None,
        train_seconds=train_seconds,
        eval_seconds=0.0,
        n_train_sequences=schedule.n_examples,
        sequences_per_second=schedule.n_examples * epochs / max(train_seconds, 1e-9),
        history=history,
        seed=settings.seed,
    )


def _length_groups(rows: np.ndarray, lengths: np.ndarray) -> Iterator[tuple[np.ndarray, int]]:
    """``rows`` in groups of at most :data:`CHUNK_SIZE` of similar length, each with
    the width it needs."""
    ordered = rows[np.argsort(lengths[rows], kind="stable")]
    for start in range(0, len(ordered), CHUNK_SIZE):
        group = ordered[start : start + CHUNK_SIZE]
        yield group, max(int(lengths[group].max()), 1)
