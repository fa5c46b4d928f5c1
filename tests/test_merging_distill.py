"""Whole-model distillation on the server: rolled-out pseudo-users and the merge that
trains every weight, keeping the best held-out state (never worse than its start)."""

from __future__ import annotations

import pytest
import torch
from results_example import example_results

from silorec.merging import MergeContext, get_method, merge
from silorec.merging.learned.best import BestSoFar
from silorec.merging.learned.rollouts import Rollouts, draw_lengths, roll_out
from silorec.merging.methods.distill import _pooled as pooled_catalogue
from silorec.models import build_model, get_weights, to_tensors
from silorec.padding import PAD
from silorec.results.report import render_report
from silorec.scenario import ModelSettings

SETTINGS = ModelSettings(dim=16, layers=1, heads=2, max_len=8, dropout=0.0)
TEXT_DIM = 12


def models(n: int = 2) -> tuple[dict, list[dict]]:
    base = to_tensors(get_weights(build_model(SETTINGS, TEXT_DIM, seed=0)))
    others = [to_tensors(get_weights(build_model(SETTINGS, TEXT_DIM, seed=s)))
              for s in range(1, n + 1)]  # fmt: skip
    return base, others


def context(n_domains: int = 2, n_items: int = 25, lengths: list[float] | None = None):
    g = torch.Generator().manual_seed(5)
    return MergeContext(
        item_inputs=[torch.randn(n_items, TEXT_DIM, generator=g) for _ in range(n_domains)],
        build_model=lambda: build_model(SETTINGS, TEXT_DIM, seed=0),
        mean_lengths=lengths,
    )


def test_lengths_follow_the_reported_mean_within_bounds() -> None:
    lengths = draw_lengths(20000, 6.0, 50, torch.Generator().manual_seed(0))
    assert int(lengths.min()) >= 2 and int(lengths.max()) <= 50
    assert float(lengths.double().mean()) == pytest.approx(6.0, rel=0.05)
    assert int(draw_lengths(100, 30.0, 8, torch.Generator()).max()) == 8


def test_rollouts_start_where_asked_and_never_repeat_an_item() -> None:
    model = build_model(SETTINGS, TEXT_DIM, seed=1).eval()
    items = torch.randn(10, TEXT_DIM)
    item_repr = model.encode_items(items)
    starts, lengths = torch.tensor([3, 0, 7]), torch.tensor([4, 2, 6])
    out = roll_out(model, items, item_repr, starts, lengths, temperature=1.0,
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert out.sequences.shape == (3, 6)
    for row, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        sequence = out.sequences[row]
        assert (sequence[: 6 - length] == PAD).all()
        kept = sequence[6 - length :].tolist()
        assert kept[0] == start and len(set(kept)) == length and min(kept) >= 0


def test_cold_rollouts_follow_the_teachers_top_item() -> None:
    model = build_model(SETTINGS, TEXT_DIM, seed=2).eval()
    items = torch.randn(15, TEXT_DIM)
    item_repr = model.encode_items(items)
    out = roll_out(model, items, item_repr, torch.tensor([4]), torch.tensor([2]),
                   temperature=1e-4, generator=torch.Generator())  # fmt: skip
    with torch.no_grad():
        scores = model.scores(model.encode_histories(items, item_repr, torch.tensor([[4]])),
                              item_repr)[0]  # fmt: skip
    scores[4] = -float("inf")
    assert int(out.sequences[0, -1]) == int(scores.argmax())


def test_prefixes_are_left_padded_beginnings() -> None:
    rollouts = Rollouts(torch.tensor([[PAD, 5, 6, 7], [1, 2, 3, 4]]), torch.tensor([3, 4]))
    got = rollouts.prefixes(torch.tensor([0, 1, 1]), torch.tensor([2, 1, 3]))
    assert got.tolist() == [[PAD, 5, 6], [PAD, PAD, 1], [1, 2, 3]]


def test_best_so_far_keeps_the_start_unless_something_is_better() -> None:
    best = BestSoFar()
    weights = {"w": torch.zeros(2)}
    assert best.offer(0, 1.0, lambda: weights)
    weights["w"] += 1  # the caller's state moves on; the copy must not
    assert not best.offer(10, 1.5, lambda: weights)
    assert best.step == 0 and torch.equal(best.state["w"], torch.zeros(2))
    assert best.offer(20, 0.5, lambda: weights) and best.step == 20
    assert not best.offer(30, float("nan"), lambda: weights)
    assert best.summary()["heldout_start"] == 1.0 and best.summary()["heldout_best"] == 0.5


def test_distillation_pulls_the_merge_towards_the_teachers() -> None:
    base, finetuned = models()
    ctx = context(lengths=[5.0, 4.0])
    params = {"start": "average", "steps": 60, "batch_size": 16, "lr": 3e-3, "eval_every": 10,
              "anchor": 0.0}  # fmt: skip
    merged = merge("distill", params, base, finetuned, seed=0, context=ctx)
    diag = ctx.diagnostics
    assert diag["heldout_best"] < 0.8 * diag["heldout_start"], diag["heldout_curve"]
    assert diag["best_step"] > 0 and len(diag["loss_curve"]) == 60
    assert diag["rollouts"] == [25, 25] and diag["mean_lengths"] == [5.0, 4.0]
    assert diag["start"] == {"method": "average", "params": {}}
    assert list(merged) == list(base) and all(t.dtype == torch.float32 for t in merged.values())
    average = merge("average", {}, base, finetuned, seed=0)
    assert any(not torch.equal(merged[n], average[n]) for n in base)


def test_distillation_never_returns_worse_than_its_start() -> None:
    """One domain: the start merge *is* its teacher (held-out KL 0), so every step
    can only lose; the held-out check keeps the start itself. With no steps the
    result is the start merge too."""
    base, finetuned = models(1)
    start = merge("average", {}, base, finetuned, seed=0)
    for params in ({"steps": 0}, {"steps": 20, "lr": 1e-2, "eval_every": 5}):
        ctx = context(n_domains=1)
        merged = merge("distill", {"start": "average", "anchor": 0.0, **params}, base, finetuned, seed=0,
                       context=ctx)  # fmt: skip
        assert ctx.diagnostics["best_step"] == 0, ctx.diagnostics["heldout_curve"]
        assert ctx.diagnostics["heldout_best"] == pytest.approx(0.0, abs=1e-6)
        for name in base:
            assert torch.equal(merged[name], start[name]), name
    assert len(ctx.diagnostics["heldout_curve"]) == 5  # steps 0, 5, 10, 15, 20


def test_the_default_start_is_task_arithmetic_at_lambda_0_2() -> None:
    base, finetuned = models()
    merged = merge("distill", {"steps": 0}, base, finetuned, seed=0, context=context())
    start = merge("task_arithmetic", {"lambda": 0.2}, base, finetuned, seed=0)
    assert all(torch.equal(merged[n], start[n]) for n in base)


def test_distillation_freezes_what_it_is_told_and_is_deterministic() -> None:
    base, finetuned = models()
    params = {"start": "average", "steps": 15, "batch_size": 8, "lr": 3e-3,
              "eval_every": 5, "freeze": ["adaptor."], "anchor": 0.0}  # fmt: skip
    runs = []
    for seed in (0, 0, 1):
        ctx = context()
        runs.append((merge("distill", params, base, finetuned, seed=seed, context=ctx), ctx))
    average = merge("average", {}, base, finetuned, seed=0)
    first, again, other = runs
    for name in base:
        if name.startswith("adaptor."):
            assert torch.equal(first[0][name], average[name]), name
        assert torch.equal(first[0][name], again[0][name]), name
    assert first[1].diagnostics["loss_curve"] != other[1].diagnostics["loss_curve"]
    trainable = sum(t.numel() for n, t in base.items() if not n.startswith("adaptor."))
    assert first[1].diagnostics["trainable_parameters"] == trainable


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "mergerec"}, "learned merge"),
        ({"start": "avrage"}, "unknown merge method 'avrage'"),
        ({"start": "task_arithmetic", "start_params": {"lamda": 0.3}}, "lamda"),
        ({"steps": -1}, "steps"),
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
    ],
)
def test_bad_distillation_parameters_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_method("distill").validate_params(params)


def test_the_transfer_anchor_keeps_the_student_near_its_start_on_a_pooled_catalogue() -> None:
    """The anchor adds one more 'domain': the pooled catalogue, taught by the start
    merge. A heavy anchor keeps the student closer to the start than no anchor does."""
    base, finetuned = models()
    start = merge("average", {}, base, finetuned, seed=0)

    def distance(anchor: float) -> tuple[float, dict]:
        ctx = context(lengths=[5.0, 3.0])
        params = {"start": "average", "steps": 40, "batch_size": 16, "lr": 3e-3,
                  "eval_every": 40, "anchor": anchor}  # fmt: skip
        merged = merge("distill", params, base, finetuned, seed=0, context=ctx)
        gap = sum(float((merged[n] - start[n]).square().sum()) for n in base)
        return gap, ctx.diagnostics

    free, free_diag = distance(0.0)
    held, held_diag = distance(50.0)
    assert held < free, (held, free)
    assert free_diag["rollouts"] == [25, 25]
    assert get_method("distill").validate_params({}).anchor is None  # 3 on text-seq:
    ctx = context()
    merge("distill", {"steps": 1}, base, finetuned, seed=0, context=ctx)
    assert ctx.diagnostics["anchor"] == 3.0 and len(ctx.diagnostics["rollouts"]) == 3
    assert ctx.diagnostics["start"] == {"method": "task_arithmetic", "params": {"lambda": 0.2}}
    assert held_diag["rollouts"] == [25, 25, 50] and held_diag["mean_lengths"][-1] == 4.0


def test_the_anchor_needs_text_embedding_item_inputs() -> None:
    tokenised = [object(), object()]  # e.g. ItemTokens (text-encoder)
    with pytest.raises(ValueError, match="anchor > 0 needs item inputs that are text embeddings"):
        pooled_catalogue(tokenised)


def test_the_report_says_what_a_distillation_did() -> None:
    run = example_results()
    run.merges.append({"label": "distill", "method": "distill", "params": {}, "learned": True,
                       "domains": ["beauty", "sports", "toys"], "seconds": 12.0,
                       "diagnostics": {"start": {"method": "task_arithmetic",
                                                 "params": {"lambda": 0.2}},
                                       "loss_curve": [0.5, 0.4], "heldout_curve": [],
                                       "heldout_start": 0.5, "heldout_best": 0.35,
                                       "best_step": 300, "rollouts": [10, 20, 30, 60],
                                       "mean_lengths": [8.0, 7.0, 6.0, 7.0], "anchor": 3.0,
                                       "trainable_parameters": 1234, "seconds": 12.0,
                                       "rollout_seconds": 2.0}})  # fmt: skip
    text = render_report(run)
    assert "### Distilled merges" in text
    assert "from `task_arithmetic(lambda=0.2)` for 2 steps (1,234 parameters)" in text
    assert "transfer anchor (weight 3) on the pooled catalogue: 60" in text
