"""Learned merges (MergeRec, AdaMerging): pseudo-users, objectives, coefficients at
task and layer granularity, and the optimisation loop on a small model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from silorec.merging import MergeContext, get_method, merge
from silorec.merging.learned.coefficients import MergeCoefficients, layer_group
from silorec.merging.learned.objectives import entropy_loss, mergerec_loss
from silorec.merging.learned.optimize import initial_task_vectors
from silorec.merging.learned.pseudo_users import build_pseudo_users, kmeans_representatives
from silorec.merging.methods.mergerec import MergeRecParams
from silorec.merging.methods.ties import TiesParams, ties
from silorec.merging.task_vectors import Layout, stack_task_vectors
from silorec.models import build_model, get_weights, to_tensors
from silorec.scenario import ModelSettings

SETTINGS = ModelSettings(dim=16, layers=2, heads=2, max_len=8, dropout=0.0)
TEXT_DIM = 12


# -- pseudo-users ---------------------------------------------------------------


def test_every_item_of_every_domain_is_a_pseudo_user() -> None:
    items = [torch.randn(5, 4), torch.randn(3, 4)]
    users = build_pseudo_users(items, "all", None, torch.Generator().manual_seed(0))
    assert users.domain.tolist() == [0] * 5 + [1] * 3
    assert users.item.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
    assert users.counts(2) == [5, 3]


def test_random_pseudo_users_are_a_seeded_subset() -> None:
    items = [torch.randn(50, 4), torch.randn(8, 4)]

    def pick(seed: int):
        return build_pseudo_users(items, "random", 10, torch.Generator().manual_seed(seed))

    first, again, other = pick(0), pick(0), pick(1)
    assert first.counts(2) == [10, 8]  # a domain smaller than the sample keeps all items
    assert torch.equal(first.item, again.item)
    assert not torch.equal(first.item, other.item)
    assert len(set(first.item[:10].tolist())) == 10


def test_kmeans_picks_one_item_per_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10
    points = np.concatenate([c + 0.1 * rng.normal(size=(6, 8)) for c in centres])
    chosen = kmeans_representatives(torch.tensor(points, dtype=torch.float32), 4,
                                    torch.Generator().manual_seed(3))  # fmt: skip
    assert sorted(int(i) // 6 for i in chosen) == [0, 1, 2, 3]


# -- objectives -----------------------------------------------------------------


def test_mergerec_loss_matches_a_hand_computation() -> None:
    student = torch.tensor([[0.2, 0.5, -0.1], [0.9, 0.1, 0.0]])
    teacher = torch.tensor([[0.1, 0.0, 0.8], [0.3, 0.6, 0.2]])
    temperature, alpha = 0.5, 4.0

    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max())
        return e / e.sum()

    s, t = student.numpy().astype(float), teacher.numpy().astype(float)
    ce = np.mean([-np.log(softmax(s[i])[t[i].argmax()]) for i in range(2)])
    kl = np.mean([
        np.sum(softmax(t[i] / temperature) * (np.log(softmax(t[i] / temperature))
                                               - np.log(softmax(s[i] / temperature))))
        for i in range(2)
    ])  # fmt: skip
    expected = ce + alpha * temperature**2 * kl
    assert float(mergerec_loss(student, teacher, temperature, alpha)) == pytest.approx(
        expected, rel=1e-5
    )


def test_mergerec_loss_is_the_cross_entropy_when_student_equals_teacher() -> None:
    logits = torch.tensor([[0.3, 0.9, 0.1]])
    ce = -math.log(math.exp(0.9) / sum(math.exp(v) for v in (0.3, 0.9, 0.1)))
    assert float(mergerec_loss(logits, logits, 0.05, 1000.0)) == pytest.approx(ce, rel=1e-5)


def test_entropy_loss_matches_a_hand_computation() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # probabilities 1/4, 3/4
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(entropy_loss(logits, 1.0)) == pytest.approx(expected, rel=1e-6)


# -- coefficients -----------------------------------------------------------------


def small_models(n: int = 2, step: float = 1.0) -> tuple[dict, list[dict]]:
    """θ0 and ``n`` models moved ``step`` of the way from θ0 to other random models."""
    base = to_tensors(get_weights(build_model(SETTINGS, TEXT_DIM, seed=0)))
    others = [to_tensors(get_weights(build_model(SETTINGS, TEXT_DIM, seed=s)))
              for s in range(1, n + 1)]  # fmt: skip
    return base, [{k: base[k] + step * (o[k] - base[k]) for k in base} for o in others]


def test_layer_groups_follow_transformer_blocks() -> None:
    assert layer_group("blocks.0.attention.query.weight") == "layer 0"
    assert layer_group("blocks.11.feed_forward.0.bias") == "layer 11"
    assert layer_group("adaptor.layers.weight") == "others"
    assert layer_group("final_norm.bias") == "others"


@pytest.mark.parametrize("granularity", ["task", "layer"])
def test_coefficients_materialise_base_plus_scaled_task_vectors(granularity: str) -> None:
    base, finetuned = small_models()
    tvs, layout = stack_task_vectors(base, finetuned)
    coefficients = MergeCoefficients(layout.flatten(base), tvs, layout, granularity, 0.5)
    if granularity == "layer":
        assert coefficients.groups == ["layer 0", "layer 1", "others"]
        with torch.no_grad():
            coefficients.lambdas[:] = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.25, 0.25]])
    weights = coefficients.weights()
    for name, tensor in weights.items():
        tau = [finetuned[k][name] - base[name] for k in range(2)]
        lam = {"task": (0.5, 0.5), "layer": {"layer 0": (1.0, 0.0), "layer 1": (0.0, 1.0),
                                              "others": (0.25, 0.25)}[layer_group(name)]}  # fmt: skip
        lam = lam[granularity]
        expected = base[name] + lam[0] * tau[0] + lam[1] * tau[1]
        torch.testing.assert_close(tensor, expected, rtol=1e-5, atol=1e-6)
    # Only λ is trainable: the base and the task vectors are buffers.
    assert [n for n, p in coefficients.named_parameters()] == ["lambdas"]
    sum(t.sum() for t in weights.values()).backward()
    assert coefficients.lambdas.grad is not None


def test_ties_initialisation_is_each_task_share_of_the_ties_merge() -> None:
    base, finetuned = small_models(3)
    params = MergeRecParams(init="ties", density=0.2)
    shares, layout = initial_task_vectors(base, finetuned, params)
    merged = ties(base, finetuned, TiesParams(density=0.2, scale=1.0),
                  generator=torch.Generator())  # fmt: skip
    assert isinstance(layout, Layout)
    summed = layout.unflatten(shares.sum(dim=0))
    for name in base:
        torch.testing.assert_close(base[name] + summed[name], merged[name])
    assert params.initial_lambda == 1.0 and MergeRecParams().initial_lambda == 0.2


# -- the optimisation -----------------------------------------------------------------


def merge_context(n_domains: int, n_items: int = 30) -> MergeContext:
    generator = torch.Generator().manual_seed(7)
    return MergeContext(
        item_inputs=[torch.randn(n_items, TEXT_DIM, generator=generator) for _ in range(n_domains)],
        build_model=lambda: build_model(SETTINGS, TEXT_DIM, seed=0),
    )


def test_learned_merges_need_their_context() -> None:
    base, finetuned = small_models()
    assert get_method("mergerec").needs_context and get_method("adamerging").needs_context
    assert not get_method("ties").needs_context
    with pytest.raises(ValueError, match="needs a MergeContext"):
        merge("mergerec", {}, base, finetuned, seed=0)


def test_mergerec_moves_towards_the_teachers_from_theta0() -> None:
    """Starting at λ = 0 (the merged model is θ0) the distillation pulls λ up, the
    loss falls, and everything learned is recorded."""
    base, finetuned = small_models(step=0.2)  # like fine-tuning: close to θ0
    context = merge_context(2)
    params = {"lambda": 0.0, "steps": 60, "batch_size": 8, "lr": 0.02, "student_dropout": False}
    params["hold_unreached"] = True
    merged = merge("mergerec", params, base, finetuned, seed=0, context=context)
    diag = context.diagnostics
    assert diag["groups"] == ["all"] and diag["pseudo_users"] == [30, 30]
    lambdas = diag["lambdas"]["all"]
    assert all(v > 0.1 for v in lambdas), lambdas
    curve = diag["loss_curve"]
    assert len(curve) == 60 and np.mean(curve[-10:]) < np.mean(curve[:10])
    assert diag["lambda_trajectory"][0]["lambdas"] == {"all": [0.0, 0.0]}
    tvs, layout = stack_task_vectors(base, finetuned)
    expected = layout.unflatten(layout.flatten(base) + torch.tensor(lambdas) @ tvs)
    # Items were held fixed: the item adaptor never reached the loss and stays at the
    # start (λ = 0, i.e. θ0); so do attention queries and keys, which a one-item
    # history cannot see (softmax over one key); everything else is θ0 + Σ λk τk.
    held = set(diag["held_at_start"])
    adaptor = {n for n in base if n.startswith("adaptor.")}
    unseen_by_one_item = {n for n in base if ".attention.query." in n or ".attention.key." in n}
    assert adaptor <= held <= adaptor | unseen_by_one_item, held
    for name in base:
        want = base[name] if name in held else expected[name]
        torch.testing.assert_close(merged[name], want, rtol=1e-4, atol=1e-5)


def test_layer_wise_mergerec_learns_one_lambda_per_layer_and_domain() -> None:
    base, finetuned = small_models()
    context = merge_context(2)
    merge("mergerec", {"granularity": "layer", "init": "ties", "steps": 20, "batch_size": 8},
          base, finetuned, seed=0, context=context)  # fmt: skip
    lambdas = context.diagnostics["lambdas"]
    assert list(lambdas) == ["layer 0", "layer 1", "others"]
    assert all(len(v) == 2 for v in lambdas.values())
    assert any(abs(v - 1.0) > 1e-4 for row in lambdas.values() for v in row)


def test_learned_merges_are_deterministic_per_seed() -> None:
    base, finetuned = small_models()
    params = {"steps": 15, "batch_size": 8, "pseudo_users": "random", "pseudo_users_per_domain": 10}

    def run(seed: int) -> list[float]:
        context = merge_context(2)
        merge("mergerec", params, base, finetuned, seed=seed, context=context)
        return context.diagnostics["loss_curve"]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_adamerging_lowers_the_entropy_of_the_merged_predictions() -> None:
    base, finetuned = small_models()
    context = merge_context(2)
    merge("adamerging", {"steps": 80, "batch_size": 16, "lr": 0.05, "temperature": 0.1,
                         "student_dropout": False}, base, finetuned, seed=0, context=context)  # fmt: skip
    curve = context.diagnostics["loss_curve"]
    assert context.diagnostics["granularity"] == "layer"
    assert np.mean(curve[-10:]) < np.mean(curve[:10])


def test_mergerec_never_returns_lambda_worse_than_the_start() -> None:
    """A learning rate that throws λ far away makes the objective worse on the check
    set; the merge returns the starting λ (and says so), not where Adam ended."""
    base, finetuned = small_models(step=0.2)
    context = merge_context(2)
    params = {"lambda": 0.3, "steps": 20, "batch_size": 8, "lr": 100.0, "check_every": 5,
              "student_dropout": False}  # fmt: skip
    merged = merge("mergerec", params, base, finetuned, seed=0, context=context)
    diag = context.diagnostics
    curve = [c["loss"] for c in diag["heldout_curve"]]
    assert len(curve) == 5 and diag["best_step"] == 0, curve
    assert diag["heldout_best"] == curve[0] < max(curve[1:])
    assert diag["lambdas"] == {"all": [pytest.approx(0.3), pytest.approx(0.3)]}
    assert diag["lambda_trajectory"][-1]["lambdas"]["all"] != [0.3, 0.3]  # Adam did move
    start = merge("task_arithmetic", {"lambda": 0.3}, base, finetuned, seed=0)
    for name in base:
        torch.testing.assert_close(merged[name], start[name], rtol=1e-5, atol=1e-6)


def test_re_encoded_items_let_the_adaptor_learn_with_the_rest() -> None:
    base, finetuned = small_models(step=0.2)
    context = merge_context(2)
    merge("mergerec", {"steps": 3, "batch_size": 8, "reencode_items": True}, base, finetuned,
          seed=0, context=context)  # fmt: skip
    assert context.diagnostics["held_at_start"] == []  # off by default
    held = context.diagnostics["not_reached"]
    assert held and not [n for n in held if n.startswith("adaptor.")], held


def test_groups_whose_parameters_never_reach_the_loss_are_reported() -> None:
    """With items held fixed, the layer-wise group holding the item adaptor still has
    other parameters (positions, final norm) that reach the loss; a group made only
    of unreachable parameters would be listed."""
    base, finetuned = small_models()
    context = merge_context(2)
    merge("mergerec", {"granularity": "layer", "steps": 2, "batch_size": 8}, base, finetuned,
          seed=0, context=context)  # fmt: skip
    assert context.diagnostics["groups_without_gradient"] == []


def test_adamerging_clamps_lambda_to_the_unit_interval() -> None:
    base, finetuned = small_models(step=0.2)
    context = merge_context(2)
    merge("adamerging", {"steps": 10, "batch_size": 8, "lr": 5.0, "check_every": 1},
          base, finetuned, seed=0, context=context)  # fmt: skip
    for step in context.diagnostics["lambda_trajectory"]:
        for row in step["lambdas"].values():
            assert all(0.0 <= v <= 1.0 for v in row), step


@pytest.mark.parametrize("method", ["mergerec", "adamerging"])
def test_learned_merges_return_the_best_checked_lambda(method: str) -> None:
    base, finetuned = small_models(step=0.2)
    context = merge_context(2)
    merge(method, {"steps": 30, "batch_size": 8, "lr": 0.05, "check_every": 10,
                   "granularity": "task"}, base, finetuned, seed=0, context=context)  # fmt: skip
    diag = context.diagnostics
    curve = {c["step"]: c["loss"] for c in diag["heldout_curve"]}
    assert sorted(curve) == [0, 10, 20, 30]
    assert diag["heldout_best"] == min(curve.values()) == curve[diag["best_step"]]
    at_best = {t["step"]: t["lambdas"] for t in diag["lambda_trajectory"]}[diag["best_step"]]
    assert diag["lambdas"]["all"] == pytest.approx(at_best["all"])


def test_the_release_preset_pins_the_released_configuration() -> None:
    params = get_method("mergerec").validate_params({"preset": "release"})
    assert (params.teacher, params.steps, params.batch_size, params.lr) == ("item", 500, 16, 1e-3)
    assert (params.temperature, params.kd_weight, params.student_dropout) == (0.05, 1000.0, True)
    assert not params.keep_best and not params.hold_unreached and not params.reencode_items
    assert params.initial_lambda == 0.2
    layer = get_method("mergerec").validate_params(
        {"preset": "release", "granularity": "layer", "init": "ties"}
    )
    assert layer.initial_lambda == 1.0 and layer.teacher == "item"
    with pytest.raises(ValueError, match="preset 'release' fixes steps = 500"):
        get_method("mergerec").validate_params({"preset": "release", "steps": 100})


def test_the_release_preset_returns_where_adam_ended_with_every_parameter_scaled() -> None:
    base, finetuned = small_models(step=0.2)
    context = merge_context(2)
    params = MergeRecParams(preset="release").model_copy(update={"steps": 12})
    merged = get_method("mergerec").merge(base, finetuned, params, generator=torch.Generator(),
                                          context=context)  # fmt: skip
    diag = context.diagnostics
    assert diag["held_at_start"] == []
    assert diag["lambdas"] == diag["lambda_trajectory"][-1]["lambdas"]
    tvs, layout = stack_task_vectors(base, finetuned)
    lambdas = torch.tensor(diag["lambdas"]["all"])
    expected = layout.unflatten(layout.flatten(base) + lambdas @ tvs)
    for name in base:
        torch.testing.assert_close(merged[name], expected[name], rtol=1e-4, atol=1e-5)
