"""Whole-model distillation on the server: start from a training-free merge and train
*all* its weights (not only λ) to match each domain's own model on that domain's
catalogue, over pseudo-user histories the domain's model rolls out itself.

This completes MergeRec's idea (pseudo-users built on the server, each domain's
fine-tuned model as the teacher; Kim et al., KDD 2026, arXiv:2601.01753) in the way
multi-teacher distillation does (Hinton et al., 2015): MergeRec learns a handful of
merge coefficients, which cannot undo what interference destroyed; here the student
has every parameter free. It stays data-isolated: the histories come from the
teachers and the catalogues' text embeddings (:mod:`~silorec.merging.learned.rollouts`),
the lengths from the describe replies' sizes.

The loss is ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` on full-catalogue scores of
the domain's own items, averaged over domains. The merge keeps the state with the
lowest loss on held-out rollouts, the start included (:mod:`~silorec.merging.learned.best`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from pydantic import ConfigDict, Field, model_validator

from silorec.merging.base import _METHODS, MergeContext, MergeParams, register_method
from silorec.merging.learned.best import BestSoFar
from silorec.merging.learned.objectives import distillation_kl
from silorec.merging.learned.rollouts import Rollouts, draw_lengths, roll_out
from silorec.merging.learned.teachers import load_teacher, seeded_dropout
from silorec.merging.task_vectors import Weights

#: Weight of the transfer anchor for text-seq models (docs/results.md, "Merge quality").
DEFAULT_ANCHOR = 3.0

#: Mean history length when the context does not say (a describe reply predating it).
DEFAULT_MEAN_LENGTH = 8.0


class DistillParams(MergeParams):
    model_config = ConfigDict(title="distill parameters")

    start: str = Field(
        "task_arithmetic", description="Training-free merge the student starts from."
    )
    start_params: dict[str, Any] | None = Field(
        None,
        description="Its parameters, in scenario spelling; default the method's own, "
        "except λ = 0.2 (MergeRec's λ0) for task_arithmetic.",
    )

    @property
    def resolved_start_params(self) -> dict[str, Any]:
        if self.start_params is not None:
            return dict(self.start_params)
        return {"lambda": 0.2} if self.start == "task_arithmetic" else {}

    steps: int = Field(300, ge=0, description="Optimiser steps.")
    batch_size: int = Field(64, ge=1, description="Histories per domain per step.")
    lr: float = Field(3e-4, gt=0.0, description="Adam learning rate.")
    temperature: float = Field(1.0, gt=0.0, description="T of the distillation softmax.")
    sample_temperature: float = Field(
        1.0, gt=0.0, description="Temperature of the teachers' sampling in the rollouts."
    )
    rollouts_per_domain: int | None = Field(
        None, ge=2, description="Rollouts per domain; default one from every catalogue item."
    )
    heldout_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Rollouts held out.")
    eval_every: int = Field(25, ge=1, description="Steps between held-out checks.")
    freeze: list[str] = Field(
        default_factory=list,
        description="Parameter-name prefixes kept at the start merge (e.g. 'adaptor.').",
    )
    student_dropout: bool = Field(False, description="Student in training mode (dropout on).")
    anchor: float | None = Field(
        None,
        ge=0.0,
        description="Weight of the transfer anchor: on the pooled catalogue of all merged "
        "domains (a catalogue no teacher calls its own, like an unseen domain's), the "
        "student also matches the start merge, which keeps its zero-shot behaviour. "
        "Default 3 where items are text embeddings (text-seq; chosen on amazon, see "
        "docs/results.md), 0 otherwise.",
    )

    @model_validator(mode="after")
    def _start_is_training_free(self) -> DistillParams:
        method = _METHODS.get(self.start)
        if method is None:
            raise ValueError(
                f"start: unknown merge method {self.start!r}; available: {', '.join(sorted(_METHODS))}"
            )
        if method.needs_context:
            raise ValueError(
                f"start: '{self.start}' is a learned merge; start from a training-free one"
            )
        method.validate_params(self.resolved_start_params)
        return self


class _Domain:
    """One domain's teacher, its catalogue and its rollouts (train and held-out)."""

    def __init__(self, weights: Weights, item_inputs: Any, context: MergeContext) -> None:
        self.items = item_inputs
        self.teacher = load_teacher(weights, context)
        with torch.no_grad():
            self.item_repr = self.teacher.encode_items(item_inputs)
        self.train: Rollouts | None = None
        self.heldout: tuple[torch.Tensor, torch.Tensor] | None = None  # histories, targets

    @torch.no_grad()
    def teacher_logits(self, histories: torch.Tensor) -> torch.Tensor:
        states = self.teacher.encode_histories(self.items, self.item_repr, histories)
        return self.teacher.scores(states, self.item_repr)


def _draw_cuts(rollouts: Rollouts, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A history length in ``[1, length − 1]`` per row: the teacher is asked about the
    next item after a prefix that the rollout continues."""
    top = (rollouts.lengths[rows] - 1).clamp_min(1).double()
    return 1 + (torch.rand(len(rows), generator=generator, dtype=torch.float64) * top).long()


def _pooled(items: list[Any]) -> torch.Tensor:
    """All merged domains' item inputs as one catalogue (text embeddings only)."""
    if not all(isinstance(x, torch.Tensor) for x in items):
        raise ValueError(
            "distill: anchor > 0 needs item inputs that are text embeddings (model kind "
            "'text-seq'); set anchor = 0 for this model"
        )
    return torch.cat(items)


@register_method(
    "distill",
    DistillParams,
    summary="Distillation: every weight of a training-free merge trained to match each "
    "domain's model on its own rolled-out pseudo-users.",
    reference="arXiv:2601.01753 (pseudo-users), arXiv:1503.02531 (distillation)",
    needs_context=True,
)
def distill(
    base: Weights,
    finetuned: Sequence[Weights],
    params: DistillParams,
    *,
    generator: torch.Generator,
    context: MergeContext,
) -> Weights:
    start = _METHODS[params.start].merge(
        base, finetuned, params.resolved_start_params, generator=generator
    )
    with seeded_dropout(generator, context.device):
        return _distill(start, finetuned, params, generator=generator, context=context)


def _prepare(
    domains: list[_Domain], params: DistillParams, context: MergeContext,
    max_length: int, generator: torch.Generator,
) -> list[float]:  # fmt: skip
    """Roll out every domain and split the rollouts; returns the mean lengths used."""
    means = []
    for k, domain in enumerate(domains):
        n_items = domain.item_repr.shape[0]
        count = params.rollouts_per_domain or n_items
        if count <= n_items:
            starts = torch.randperm(n_items, generator=generator)[:count]
        else:
            starts = torch.randint(0, n_items, (count,), generator=generator)
        mean = DEFAULT_MEAN_LENGTH
        if context.mean_lengths is not None and context.mean_lengths[k] > 0:
            mean = float(context.mean_lengths[k])
        means.append(mean)
        lengths = draw_lengths(count, mean, min(max_length, n_items), generator)
        rollouts = roll_out(domain.teacher, domain.items, domain.item_repr, starts, lengths,
                            temperature=params.sample_temperature, generator=generator)  # fmt: skip
        held = max(1, int(round(count * params.heldout_fraction)))
        order = torch.randperm(count, generator=generator)
        heldout_rows, train_rows = order[:held], order[held:]
        domain.train = Rollouts(rollouts.sequences[train_rows], rollouts.lengths[train_rows])
        held_rollouts = Rollouts(rollouts.sequences[heldout_rows], rollouts.lengths[heldout_rows])
        rows = torch.arange(held)
        histories = held_rollouts.prefixes(rows, _draw_cuts(held_rollouts, rows, generator))
        histories = histories.to(context.device)
        domain.heldout = (histories, domain.teacher_logits(histories))
    return means


def _distill(
    start: Weights,
    finetuned: Sequence[Weights],
    params: DistillParams,
    *,
    generator: torch.Generator,
    context: MergeContext,
) -> Weights:
    started = time.perf_counter()
    device = context.device
    items = [x.to(device) for x in context.item_inputs]
    domains = [_Domain(w, x, context) for w, x in zip(finetuned, items, strict=True)]
    weights = [1.0] * len(domains)
    anchor = params.anchor
    if anchor is None:
        anchor = DEFAULT_ANCHOR if all(isinstance(x, torch.Tensor) for x in items) else 0.0
    if anchor > 0:
        domains.append(_Domain(start, _pooled(items), context))
        weights.append(anchor)
        if context.mean_lengths is not None:
            known = [m for m in context.mean_lengths if m > 0]
            context = replace(context, mean_lengths=[*context.mean_lengths,
                                                     sum(known) / len(known) if known else 0.0])  # fmt: skip
    student = context.build_model().to(device)
    student.load_state_dict({n: t.to(device) for n, t in start.items()})
    max_length = int(student.settings.max_len)
    means = _prepare(domains, params, context, max_length, generator)
    rollout_seconds = time.perf_counter() - started

    frozen = tuple(params.freeze)
    trainable = []
    for name, parameter in student.named_parameters():
        parameter.requires_grad_(not name.startswith(frozen) if frozen else True)
        if parameter.requires_grad:
            trainable.append(parameter)

    def heldout_loss() -> float:
        student.eval()
        with torch.no_grad():
            total = 0.0
            for domain, weight in zip(domains, weights, strict=True):
                histories, targets = domain.heldout
                item_repr = student.encode_items(domain.items)
                states = student.encode_histories(domain.items, item_repr, histories)
                kl = distillation_kl(student.scores(states, item_repr), targets, params.temperature)
                total += weight * float(kl)
        return total / sum(weights)

    best = BestSoFar()
    best.offer(0, heldout_loss(), student.state_dict)
    losses: list[float] = []
    optimizer = torch.optim.Adam(trainable, lr=params.lr) if trainable else None
    for step in range(1, params.steps + 1 if optimizer else 1):
        student.train(params.student_dropout)
        total = torch.zeros((), device=device)
        for domain, weight in zip(domains, weights, strict=True):
            rows = torch.randint(0, len(domain.train), (params.batch_size,), generator=generator)
            histories = domain.train.prefixes(rows, _draw_cuts(domain.train, rows, generator))
            histories = histories.to(device)
            targets = domain.teacher_logits(histories)
            item_repr = student.encode_items(domain.items)
            states = student.encode_histories(domain.items, item_repr, histories)
            kl = distillation_kl(student.scores(states, item_repr), targets, params.temperature)
            total = total + weight * kl
        loss = total / sum(weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % params.eval_every == 0 or step == params.steps:
            best.offer(step, heldout_loss(), student.state_dict)
    context.diagnostics.update(
        {
            "start": {"method": params.start, "params": params.resolved_start_params},
            "loss_curve": losses,
            **best.summary(),
            "rollouts": [len(d.train) + len(d.heldout[0]) for d in domains],
            "anchor": anchor,
            "mean_lengths": means,
            "trainable_parameters": sum(p.numel() for p in trainable),
            "rollout_seconds": round(rollout_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    if context.log:
        context.log(
            f"distilled {params.steps} steps: held-out KL {best.curve[0]['loss']:.4f} -> "
            f"{best.loss:.4f} (step {best.step})"
        )
    return {name: t.detach().float().cpu() for name, t in best.state.items() if name in start}
