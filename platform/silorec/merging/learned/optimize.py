"""Learning merge coefficients on pseudo-users (the machinery of MergeRec and
AdaMerging; the methods differ only in their objective and defaults).

θ(λ) = θ0 + Σk λk τk is materialised at every step and the model is run on it with
``torch.func.functional_call``: only λ trains. Teacher scores come from each domain's
own fine-tuned model, computed batch by batch (never an items x items matrix). Item
representations on the student side are computed once by the initial merged model
and held fixed, as in the release, unless ``reencode_items`` is set.

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
from silorec.merging.learned.coefficients import Granularity, MergeCoefficients
from silorec.merging.learned.pseudo_users import PseudoUsers, Sampling, build_pseudo_users
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
            model = context.build_model().to(context.device)
            model.load_state_dict({n: t.to(context.device) for n, t in weights.items()})
            model.eval()
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
    # Dropout draws from torch's global generator: seed it from ``generator`` inside a
    # forked state, so the merge depends on its seed alone, not on what ran before it
    # in this process (the caller's random state is left as it was).
    dropout_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    devices = [context.device] if context.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(dropout_seed)
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

    optimizer = torch.optim.Adam(coefficients.parameters(), lr=params.lr)
    losses: list[float] = []
    trajectory: list[dict[str, object]] = [{"step": 0, "lambdas": coefficients.table()}]
    for step, batch in enumerate(_batches(pseudo, params.batch_size, params.steps, generator), 1):
        weights = coefficients.weights()
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
        loss = total / len(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % TRAJECTORY_EVERY == 0 or step == params.steps:
            trajectory.append({"step": step, "lambdas": coefficients.table()})
    context.diagnostics.update(
        {
            "granularity": params.granularity,
            "init": params.init,
            "groups": coefficients.groups,
            "lambdas": coefficients.table(),
            "loss_curve": losses,
            "lambda_trajectory": trajectory,
            "pseudo_users": pseudo.counts(len(items)),
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    if context.log:
        context.log(f"learned λ in {params.steps} steps, loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    with torch.no_grad():
        return {name: t.detach().cpu() for name, t in coefficients.weights().items()}
