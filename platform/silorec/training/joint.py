"""Training one model on several domains' data pooled together: the *Joint* oracle.

Pooling interactions is exactly what silorec exists to avoid, so this is only an
upper reference for what merging could reach; the in-process engine alone runs it.
Each batch comes from one domain (every domain scores against its own catalogue);
batches of all domains are shuffled together each epoch, and early stopping follows
the mean validation NDCG@10 over the domains.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from silorec.data.domain import DomainData
from silorec.evaluation.protocol import evaluate, evaluation_users
from silorec.models.text_seq import PAD, TextSeqRec
from silorec.progress import StepProgress
from silorec.scenario.schema import EvaluationSettings, TrainSettings
from silorec.training.finetune import (
    EARLY_STOPPING_METRIC,
    length_buckets,
    next_item_loss,
    training_examples,
)


@dataclass(frozen=True)
class JointReport:
    """What happened during pooled training."""

    epochs_run: int
    best_epoch: int
    best_valid_ndcg10: float
    seconds: float
    n_train_sequences: int


def fine_tune_joint(
    model: TextSeqRec,
    domains: Sequence[DomainData],
    text_embeddings: Sequence[torch.Tensor],
    settings: TrainSettings,
    eval_settings: EvaluationSettings,
) -> JointReport:
    """Train ``model`` in place on all ``domains`` at once; keeps the weights with
    the best mean validation NDCG@10 (the starting point included)."""
    started = time.perf_counter()
    device = text_embeddings[0].device
    rng = np.random.default_rng(settings.seed)
    examples = []
    for domain in domains:
        inputs, targets = training_examples(domain, model.settings.max_len)
        examples.append((torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device),
                         (inputs != PAD).sum(axis=1)))  # fmt: skip
    valid_users = [evaluation_users(d, settings.max_valid_users, settings.seed) for d in domains]
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr,
                                 weight_decay=settings.weight_decay)  # fmt: skip

    def validate() -> float:
        scores = [
            evaluate(model, d, t, "valid", eval_settings, u).metrics[EARLY_STOPPING_METRIC]
            for d, t, u in zip(domains, text_embeddings, valid_users, strict=True)
        ]
        return float(np.mean(scores))

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        best, best_epoch, best_state, stale = validate(), 0, copy.deepcopy(model.state_dict()), 0
        progress = StepProgress(settings.epochs, "joint (oracle)", enabled=settings.progress)
        epochs_run = 0
        for epoch in range(1, settings.epochs + 1):
            model.train()
            batches = [(k, batch, width) for k, (_, _, lengths) in enumerate(examples)
                       for batch, width in length_buckets(lengths, settings.batch_size, rng)]  # fmt: skip
            losses = []
            for index in rng.permutation(len(batches)):
                k, batch, width = batches[index]
                inputs, targets, _ = examples[k]
                rows = torch.from_numpy(batch).to(device)
                loss = next_item_loss(model, text_embeddings[k], inputs[rows, -width:],
                                      targets[rows, -width:])  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            score = validate()
            epochs_run = epoch
            progress.step(epoch, {"loss": float(np.mean(losses)), "valid_ndcg@10": score})
            if score > best:
                best, best_epoch, best_state, stale = (
                    score,
                    epoch,
                    copy.deepcopy(model.state_dict()),
                    0,
                )
            else:
                stale += 1
                if stale >= settings.patience:
                    break
        progress.close()
    model.load_state_dict(best_state)
    return JointReport(epochs_run, best_epoch, best, time.perf_counter() - started,
                       sum(len(e[0]) for e in examples))  # fmt: skip
