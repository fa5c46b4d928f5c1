"""Learned merges (MergeRec, AdaMerging) with the text-encoder backbone: pseudo-users
are item texts run through θ(λ), through the same model-agnostic machinery as text-seq."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from silorec.merging import MergeContext, merge
from silorec.models import (
    PAD,
    ItemTokens,
    TextEncoderRec,
    build_model,
    get_weights,
    to_tensors,
)
from silorec.models.item_tokens import tokenize_items
from silorec.scenario import ModelSettings

SETTINGS = ModelSettings(kind="text-encoder", dim=384, encoder_layers=1, dropout=0.0,
                         max_item_tokens=8, max_sequence_tokens=16)  # fmt: skip
CATALOGUES = [
    ["apple pie", "lemon tart", "chocolate cake", "cherry jam", "honey bread", "plum cake"],
    ["red guitar", "grand piano", "violin bow", "drum kit", "flute case", "brass horn"],
]


def fine_tuned(base: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """A stand-in for a domain model: θ0 plus a small random task vector."""
    generator = torch.Generator().manual_seed(seed)
    return {n: t + 0.02 * torch.randn(t.shape, generator=generator) for n, t in base.items()}


@pytest.fixture(scope="module")
def models() -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    base = to_tensors(get_weights(build_model(SETTINGS, 4, seed=0)))
    return base, [fine_tuned(base, 1), fine_tuned(base, 2)]


def context() -> MergeContext:
    generator = torch.Generator().manual_seed(0)
    return MergeContext(
        item_inputs=[tokenize_items(texts, SETTINGS.max_item_tokens) for texts in CATALOGUES],
        item_embeddings=[torch.randn(len(texts), 4, generator=generator) for texts in CATALOGUES],
        build_model=lambda: build_model(SETTINGS, 4, seed=0),
    )


def test_a_pseudo_user_is_its_items_own_text() -> None:
    """So teachers scoring the one-item sequence [i] or item i's representation agree."""
    model: TextEncoderRec = build_model(SETTINGS, 4, seed=0).eval()
    items: ItemTokens = tokenize_items(CATALOGUES[0], SETTINGS.max_item_tokens)
    with torch.no_grad():
        item_repr = model.encode_items(items)
        pseudo = torch.arange(len(items))[:, None]
        states = model.encode_histories(items, item_repr, pseudo)
    torch.testing.assert_close(states, item_repr, atol=1e-5, rtol=0)
    assert PAD not in pseudo


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_mergerec_learns_lambda_on_item_texts(models, granularity: str) -> None:
    base, finetuned = models
    ctx = context()
    params = {"granularity": granularity, "steps": 6, "batch_size": 4, "lr": 0.05,
              "student_dropout": False}  # fmt: skip
    merged = merge("mergerec", params, base, finetuned, seed=0, context=ctx)
    assert list(merged) == list(base)  # the frozen token table is not merged
    diagnostics = ctx.diagnostics
    groups = ["all"] if granularity == "task" else ["layer 0", "others"]
    assert diagnostics["groups"] == groups
    assert diagnostics["pseudo_users"] == [6, 6]
    losses = diagnostics["loss_curve"]
    assert len(losses) == 6 and all(np.isfinite(losses))
    lambdas = torch.tensor(list(diagnostics["lambdas"].values()))
    assert not torch.allclose(lambdas, torch.full_like(lambdas, lambdas[0, 0]))  # λ moved
    # θ(λ) = θ0 + Σ λ_k τ_k with the learned λ, group by group.
    name = "bert.encoder.layer.0.output.dense.weight"
    row = diagnostics["lambdas"]["all" if granularity == "task" else "layer 0"]
    expected = base[name] + sum(
        lam * (ft[name] - base[name]) for lam, ft in zip(row, finetuned, strict=True)
    )
    torch.testing.assert_close(merged[name], expected, atol=1e-5, rtol=1e-4)


def test_teacher_modes_agree_for_the_encoder(models) -> None:
    base, finetuned = models
    results = []
    for teacher in ("sequence", "item"):
        params = {"steps": 3, "batch_size": 4, "student_dropout": False, "teacher": teacher}
        results.append(merge("mergerec", params, base, finetuned, seed=0, context=context()))
    for name in base:
        torch.testing.assert_close(results[0][name], results[1][name], atol=1e-6, rtol=1e-5)


def test_adamerging_and_kmeans_pseudo_users_on_the_encoder(models) -> None:
    base, finetuned = models
    ctx = context()
    params = {"steps": 3, "batch_size": 4, "reencode_items": True,
              "pseudo_users": "kmeans", "pseudo_users_per_domain": 3}  # fmt: skip
    merged = merge("adamerging", params, base, finetuned, seed=0, context=ctx)
    assert list(merged) == list(base)
    assert all(1 <= n <= 3 for n in ctx.diagnostics["pseudo_users"])
    assert all(np.isfinite(ctx.diagnostics["loss_curve"]))
