"""Learning merge coefficients on pseudo-users (the machinery of MergeRec and
AdaMerging; the methods differ only in their objective and defaults).

θ(λ) = θ0 + Σk λk τk is materialised at every step and the model is run on it with
``torch.func.functional_call``: only λ trains. Teacher scores come from each domain's
own fine-tuned model, computed batch by batch (never an items x items matrix). Item
representations on the student side are computed once by the initial merged model
and held fixed, as in the release, unless ``reencode_items`` is set. Parameters the
objective then never reaches (the item encoder of text-seq; with one-item histories
also the attention queries and keys) are listed in the diagnostics (``not_reached``):
they move with λ learned from the other parameters, as in the release, unless
``hold_unreached`` keeps them at the start. Every λ still receives gradient as long
as its group holds one reached parameter (``groups_without_gradient`` says otherwise).

The objective is measured on a fixed check set of pseudo-users at the start and every
``check_every`` steps, and the merge returns the best λ checked, the start included
(:mod:`~silorec.merging.learned.best`).

Models are run through their common interface (:mod:`silorec.models`), so any kind
works: a pseudo-user [i] is the one-item history [i], which text-seq reads through
item i's representation and text-encoder as item i's own text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn
from torch.func import functional_call

from silorec.merging.base import MergeContext, MergeParams
from silorec.merging.learned.best import BestSoFar
from silorec.merging.learned.coefficients import Granularity, MergeCoefficients
from silorec.merging.learned.pseudo_users import PseudoUsers, Sampling, build_pseudo_users
from silorec.merging.learned.teachers import load_teacher, seeded_dropout
from silorec.merging.steps import disjoint_contributions, magnitude_trim, sign_consensus
from silorec.merging.task_vectors import Weights, stack_task_vectors

#: Objective: (student logits, teacher logits) of one domain's pseudo-users -> loss.
Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: How often the λ trajectory is recorded (steps).
TRAJECTORY_EVERY = 10


class LearnedMergeParams(MergeParams):
    """Parameters shared by learned merges (defaults: the MergeRec release)."""

    init: Literal["task_arithmetic", "ties"] = Field(
        "task_arithmetic",
        description="Task vectors as they are ('task_arithmetic') or TIES-processed "
        "(trim, sign election, each task's share of the disjoint mean).",
    )
    granularity: Granularity = Field("task", description="'task': one λ per domain; "
                                     "'layer': one per domain per layer group.")  # fmt: skip
    scale: float | None = Field(
        None, alias="lambda", description="Initial λ; default 0.2 (task_arithmetic) or 1.0 (ties)."
    )
    density: float = Field(0.2, gt=0.0, le=1.0, description="TIES init: share of entries kept.")
    steps: int = Field(500, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    pseudo_users: Sampling = "all"
    pseudo_users_per_domain: int | None = Field(None, ge=1)
    teacher: Literal["sequence", "item"] = Field(
        "sequence",
        description="Teacher row of pseudo-user [i]: the domain model's scores of the "
        "one-item sequence, or (the release's scripts) of item i's own representation.",
    )
    reencode_items: bool = Field(False, description="Re-encode items with θ(λ) at every step.")
    lambda_min: float | None = Field(None, description="Lower bound of every λ (clamped).")
    lambda_max: float | None = Field(None, description="Upper bound of every λ (clamped).")
    check_every: int = Field(
        50, ge=1, description="Steps between checks of the objective on a fixed check set; "
        "the merge returns the best λ checked, the start included.",
    )  # fmt: skip
    keep_best: bool = Field(
        True, description="Return the best λ on the check set (False: where Adam ended)."
    )
    hold_unreached: bool = Field(
        False, description="Parameters the objective never reaches (listed in the "
        "diagnostics as 'not_reached') stay at the start merge; off by default, as in "
        "the release: on quickstart holding them lowered MergeRec's merged Recall@10 "
        "from 0.2328 to 0.2017 (docs/results.md).",
    )  # fmt: skip
    check_users: int = Field(
        256, ge=1, description="Pseudo-users per domain in the check set (drawn from the pool)."
    )
    student_dropout: bool = Field(True, description="Merged model in training mode (the release).")

    @property
    def initial_lambda(self) -> float:
        if self.scale is not None:
            return self.scale
        return 1.0 if self.init == "ties" else 0.2


class _Method(nn.Module):
    """Exposes one method of a model as ``forward`` for ``functional_call``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *args: Any) -> torch.Tensor:
        return getattr(self.model, self.method)(*args)


def _prefixed(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"model.{name}": tensor for name, tensor in weights.items()}


def initial_task_vectors(
    base: Weights, finetuned: Sequence[Weights], params: LearnedMergeParams
) -> tuple[torch.Tensor, object]:
    """``[K, N]`` task vectors the coefficients scale, and their layout."""
    tvs, layout = stack_task_vectors(base, finetuned)
    if params.init == "ties":
        trimmed = magnitude_trim(tvs, params.density, groups=None)  # global top-k
        tvs = disjoint_contributions(trimmed, sign_consensus(trimmed))
    return tvs, layout


class _Teachers:
    """Each domain's fine-tuned model, scoring pseudo-users of its own domain."""

    def __init__(
        self, finetuned: Sequence[Weights], context: MergeContext, items: list[Any], mode: str,
    ) -> None:  # fmt: skip
        self.mode = mode
        self.items = items
        self.models, self.item_repr = [], []
        for weights, inputs in zip(finetuned, items, strict=True):
            model = load_teacher(weights, context)
            self.models.append(model)
            with torch.no_grad():
                self.item_repr.append(model.encode_items(inputs))

    @torch.no_grad()
    def logits(self, domain: int, items: torch.Tensor) -> torch.Tensor:
        repr_ = self.item_repr[domain]
        if self.mode == "item":
            states = repr_[items]
        else:
            states = self.models[domain].encode_histories(self.items[domain], repr_, items[:, None])
        return states @ repr_.T


def _batches(pseudo: PseudoUsers, size: int, steps: int, generator: torch.Generator):
    """``steps`` batches of pseudo-user indices: shuffled passes over all of them."""
    order = torch.empty(0, dtype=torch.int64)
    for _ in range(steps):
        while len(order) < size:
            order = torch.cat([order, torch.randperm(len(pseudo), generator=generator)])
        yield order[:size]
        order = order[size:]


def _check_set(pseudo: PseudoUsers, per_domain: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of up to ``per_domain`` pseudo-users of each domain, fixed for the run:
    where the objective is measured to pick the best λ."""
    chosen = []
    for domain in pseudo.domain.unique().tolist():
        members = torch.nonzero(pseudo.domain == domain).flatten()
        order = torch.randperm(len(members), generator=generator)[:per_domain]
        chosen.append(members[order])
    return torch.cat(chosen)


def _groups_without_gradient(coefficients: MergeCoefficients) -> list[str]:
    """λ groups whose every coefficient got exactly zero gradient: their parameters
    never reach the objective (e.g. the item adaptor when items are held fixed), so
    learning cannot move them; recorded so that a report can say so."""
    grad = coefficients.lambdas.grad
    if grad is None:
        return list(coefficients.groups)
    return [g for g, row in zip(coefficients.groups, grad, strict=True) if not bool(row.any())]


def learn_merge(
    base: Weights,
    finetuned: Sequence[Weights],
    params: LearnedMergeParams,
    objective: Objective,
    *,
    generator: torch.Generator,
    context: MergeContext,
    needs_teacher: bool = True,
) -> Weights:
    """Learn λ by minimising ``objective`` over pseudo-users; returns θ(λ) and records
    λ, the loss curve and timings in ``context.diagnostics``."""
    with seeded_dropout(generator, context.device):
        return _learn(base, finetuned, params, objective, generator=generator,
                      context=context, needs_teacher=needs_teacher)  # fmt: skip


def _learn(
    base: Weights,
    finetuned: Sequence[Weights],
    params: LearnedMergeParams,
    objective: Objective,
    *,
    generator: torch.Generator,
    context: MergeContext,
    needs_teacher: bool,
) -> Weights:
    started = time.perf_counter()
    device = context.device
    tvs, layout = initial_task_vectors(base, finetuned, params)
    coefficients = MergeCoefficients(
        layout.flatten(base).to(device), tvs.to(device), layout, params.granularity,
        params.initial_lambda,
    ).to(device)  # fmt: skip
    items = [x.to(device) for x in context.item_inputs]
    teachers = _Teachers(finetuned, context, items, params.teacher) if needs_teacher else None
    pseudo = build_pseudo_users(context.catalogue_embeddings(), params.pseudo_users,
                                params.pseudo_users_per_domain, generator)  # fmt: skip
    skeleton = context.build_model().to(device)
    encode_items = _Method(skeleton, "encode_items")
    encode_histories = _Method(skeleton, "encode_histories")

    def student_items(weights: dict[str, torch.Tensor], domain: int) -> torch.Tensor:
        return functional_call(encode_items, _prefixed(weights), (items[domain],))

    with torch.no_grad():
        skeleton.eval()
        initial = coefficients.weights()
        fixed_items = [student_items(initial, k) for k in range(len(items))]
    skeleton.train(params.student_dropout)

    def batch_loss(batch: torch.Tensor, weights: dict[str, torch.Tensor] | None = None):
        weights = coefficients.weights() if weights is None else weights
        total = torch.zeros((), device=device)
        for domain in pseudo.domain[batch].unique().tolist():
            members = pseudo.item[batch][pseudo.domain[batch] == domain].to(device)
            item_repr = (
                student_items(weights, domain) if params.reencode_items else fixed_items[domain]
            )
            states = functional_call(
                encode_histories, _prefixed(weights), (items[domain], item_repr, members[:, None])
            )
            student = states @ item_repr.T
            teacher = teachers.logits(domain, members) if teachers else student.detach()
            total = total + objective(student, teacher) * len(members)
        return total / len(batch)

    check_set = _check_set(pseudo, params.check_users, generator)
    best = BestSoFar()

    def check(step: int) -> None:
        skeleton.eval()  # the objective itself, without dropout's noise
        with torch.no_grad():
            loss = sum(float(batch_loss(b)) * len(b) for b in check_set.split(256)) / len(check_set)
        skeleton.train(params.student_dropout)
        best.offer(step, loss, lambda: {"lambdas": coefficients.lambdas})

    check(0)
    optimizer = torch.optim.Adam(coefficients.parameters(), lr=params.lr)
    losses: list[float] = []
    trajectory: list[dict[str, object]] = [{"step": 0, "lambdas": coefficients.table()}]
    unreached: list[str] = []
    for step, batch in enumerate(_batches(pseudo, params.batch_size, params.steps, generator), 1):
        weights = coefficients.weights()
        if step == 1:
            for tensor in weights.values():
                tensor.retain_grad()
        loss = batch_loss(batch, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1:
            no_gradient = _groups_without_gradient(coefficients)
            unreached = [n for n, t in weights.items() if t.grad is None or not bool(t.grad.any())]
        optimizer.step()
        if params.lambda_min is not None or params.lambda_max is not None:
            with torch.no_grad():
                coefficients.lambdas.clamp_(params.lambda_min, params.lambda_max)
        losses.append(float(loss.detach()))
        if step % TRAJECTORY_EVERY == 0 or step == params.steps:
            trajectory.append({"step": step, "lambdas": coefficients.table()})
        if step % params.check_every == 0 or step == params.steps:
            check(step)
    if params.keep_best:
        with torch.no_grad():  # back to the best λ checked (the start if nothing beat it)
            coefficients.lambdas.copy_(best.state["lambdas"])
    context.diagnostics.update(
        {
            "granularity": params.granularity,
            "init": params.init,
            "groups": coefficients.groups,
            "lambdas": coefficients.table(),
            "loss_curve": losses,
            "lambda_trajectory": trajectory,
            **best.summary(),
            "groups_without_gradient": no_gradient if params.steps else [],
            "not_reached": unreached,
            "held_at_start": unreached if params.hold_unreached else [],
            "pseudo_users": pseudo.counts(len(items)),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    if context.log:
        context.log(
            f"learned λ in {params.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
            f"check set {best.curve[0]['loss']:.4f} -> {best.loss:.4f} (step {best.step})"
        )
    with torch.no_grad():
        merged = {name: t.detach().cpu() for name, t in coefficients.weights().items()}
        # Parameters the objective never saw (the item encoder when items are held
        # fixed) stay as they were when the student was scored: the start merge.
        for name in unreached if params.hold_unreached else []:
            merged[name] = initial[name].detach().cpu()
        return merged
