"""The merge methods: hand-worked examples and the identities that tie them together."""

from __future__ import annotations

import pytest
import torch

from silorec.merging import available_methods, get_method, merge
from silorec.merging.steps import disjoint_mean, random_drop, sign_consensus
from silorec.merging.task_vectors import Weights, apply, stack_task_vectors


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def run(name: str, base: Weights, finetuned: list[Weights], seed: int = 0, **params) -> Weights:
    return merge(name, params, base, finetuned, seed=seed)


# θ0 and three task vectors, one parameter "w" of shape (2, 2) (row-major below).
THETA0 = t(0.5, -0.5, 1.0, 2.0)
TAUS = [t(4.0, -1.0, 2.0, 0.5), t(-3.0, 2.0, 1.0, 1.0), t(1.0, -2.0, -1.0, 3.0)]


def hand_models() -> tuple[Weights, list[Weights]]:
    base = {"w": THETA0.reshape(2, 2)}
    return base, [{"w": (THETA0 + tau).reshape(2, 2)} for tau in TAUS]


def random_models(k: int = 3, seed: int = 0) -> tuple[Weights, list[Weights]]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"emb.w": (7, 5), "layer.w": (5, 5), "layer.b": (5,), "scale": (1,)}
    base = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    ft = [{n: v + torch.randn(v.shape, generator=g) for n, v in base.items()} for _ in range(k)]
    return base, ft


def flat(weights: Weights) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in weights.values()])


# ---------------------------------------------------------------------------
# hand-worked examples
# ---------------------------------------------------------------------------


def test_average_by_hand() -> None:
    base, ft = hand_models()
    # mean τ = (2/3, −1/3, 2/3, 1.5)
    expected = THETA0 + t(2 / 3, -1 / 3, 2 / 3, 1.5)
    assert torch.allclose(run("average", base, ft)["w"].reshape(-1), expected)


def test_task_arithmetic_by_hand() -> None:
    base, ft = hand_models()
    # Σ τ = (2, −1, 2, 4.5); λ = 0.5
    out = run("task_arithmetic", base, ft, **{"lambda": 0.5})
    assert torch.equal(out["w"].reshape(-1), t(1.5, -1.0, 2.0, 4.25))
    # default λ = 0.3
    default = run("task_arithmetic", base, ft)
    assert torch.allclose(default["w"].reshape(-1), THETA0 + 0.3 * t(2.0, -1.0, 2.0, 4.5))


def test_ties_by_hand() -> None:
    base, ft = hand_models()
    # trim, density 0.5 (2 of 4 per task vector):
    #   τ1 ( 4, −1,  2, 0.5) -> ( 4,  0, 2, 0)
    #   τ2 (−3,  2,  1, 1  ) -> (−3,  2, 0, 0)
    #   τ3 ( 1, −2, −1, 3  ) -> ( 0, −2, 0, 3)
    # elect: sums (1, 0, 2, 3) -> (+, 0, +, +)
    # disjoint mean: (4, 0, 2, 3)
    out = run("ties", base, ft, density=0.5, **{"lambda": 1.0})
    assert torch.equal(out["w"].reshape(-1), THETA0 + t(4.0, 0.0, 2.0, 3.0))
    half = run("ties", base, ft, density=0.5, **{"lambda": 0.5})
    assert torch.equal(half["w"].reshape(-1), THETA0 + t(2.0, 0.0, 1.0, 1.5))


def test_ties_scope_by_hand() -> None:
    base = {"a": torch.zeros(4), "b": torch.zeros(2)}
    ft = [
        {"a": t(4.0, -1.0, 2.0, 0.5), "b": t(10.0, 20.0)},
        {"a": t(-1.0, -5.0, 3.0, 3.0), "b": t(0.0, 0.1)},
    ]
    # per tensor (density 0.5): rows (4, 0, 2, 0 | 0, 20) and (0, −5, 3, 0 | 0, 0.1)
    #   -> a = (4, −5, (2 + 3)/2, 0), b = (0, (20 + 0.1)/2)
    per_tensor = run("ties", base, ft, density=0.5, scope="tensor")
    assert torch.equal(per_tensor["a"], t(4.0, -5.0, 2.5, 0.0))
    assert torch.allclose(per_tensor["b"], t(0.0, 10.05))
    # global: rows (4, 0, 0, 0 | 10, 20) and (0, −5, 3, 3 | 0, 0)
    global_ = run("ties", base, ft, density=0.5, scope="global")
    assert torch.equal(global_["a"], t(4.0, -5.0, 3.0, 3.0))
    assert torch.equal(global_["b"], t(10.0, 20.0))
    # "global" is the default
    assert torch.equal(flat(run("ties", base, ft, density=0.5)), flat(global_))


def test_dare_is_unbiased_task_arithmetic() -> None:
    n = 100_000
    base = {"w": torch.zeros(n)}
    ft = [{"w": torch.full((n,), 2.0)}, {"w": torch.full((n,), -1.0)}]
    out = run("dare", base, ft, drop_rate=0.5, **{"lambda": 1.0})["w"]
    # each entry is 4·B1 − 2·B2 with B ~ Bernoulli(0.5): values {−2, 0, 2, 4}, mean 1
    assert set(out.unique().tolist()) == {-2.0, 0.0, 2.0, 4.0}
    assert abs(out.mean().item() - 1.0) < 0.03  # std of the mean ≈ 0.007


def test_dare_composes_drop_with_ties_combination() -> None:
    base, ft = random_models(k=3)
    out = run("dare", base, ft, seed=5, drop_rate=0.6, combine="ties", **{"lambda": 0.8})
    tvs, layout = stack_task_vectors(base, ft)
    dropped = random_drop(tvs, 0.6, generator=torch.Generator().manual_seed(5))
    expected = apply(base, layout.unflatten(disjoint_mean(dropped, sign_consensus(dropped))), 0.8)
    assert torch.equal(flat(out), flat(expected))


# ---------------------------------------------------------------------------
# identities between methods
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5])
def test_average_is_task_arithmetic_with_one_over_k(k: int) -> None:
    base, ft = random_models(k)
    avg = run("average", base, ft)
    ta = run("task_arithmetic", base, ft, **{"lambda": 1.0 / k})
    assert torch.allclose(flat(avg), flat(ta), atol=1e-6)
    # and it is the mean of the models' weights
    assert torch.allclose(flat(avg), torch.stack([flat(m) for m in ft]).mean(0), atol=1e-6)


@pytest.mark.parametrize("scope", ["tensor", "global"])
def test_ties_density_one_single_model_is_task_arithmetic(scope: str) -> None:
    base, ft = random_models(k=1)
    ties = run("ties", base, ft[:1], density=1.0, scope=scope, **{"lambda": 0.7})
    ta = run("task_arithmetic", base, ft[:1], **{"lambda": 0.7})
    assert torch.equal(flat(ties), flat(ta))


def test_dare_without_drops_is_the_method_it_combines_with() -> None:
    base, ft = random_models(k=3)
    # default λ: 0.3 with task arithmetic, 1.0 with TIES, as those methods' defaults
    assert torch.equal(
        flat(run("dare", base, ft, drop_rate=0.0)), flat(run("task_arithmetic", base, ft))
    )
    assert torch.equal(
        flat(run("dare", base, ft, drop_rate=0.0, combine="ties")),
        flat(run("ties", base, ft, density=1.0)),
    )


def test_ties_is_odd_under_sign_flip_and_ignores_task_order() -> None:
    base, ft = random_models(k=4)
    flipped = [{n: 2 * base[n] - m[n] for n in base} for m in ft]  # θ0 − τk
    pos = flat(run("ties", base, ft)) - flat(base)
    neg = flat(run("ties", base, flipped)) - flat(base)
    assert torch.allclose(neg, -pos, atol=1e-5)
    shuffled = flat(run("ties", base, [ft[2], ft[0], ft[3], ft[1]])) - flat(base)
    assert torch.allclose(shuffled, pos, atol=1e-5)


def test_identical_models_average_back_to_themselves() -> None:
    base, ft = random_models(k=1)
    same = [ft[0], ft[0], ft[0]]
    assert torch.allclose(flat(run("average", base, same)), flat(ft[0]), atol=1e-6)
    # TIES with λ = 1 and density 1: the disjoint mean of equal vectors is that vector
    ties = run("ties", base, same, density=1.0)
    assert torch.allclose(flat(ties), flat(ft[0]), atol=1e-6)


# ---------------------------------------------------------------------------
# determinism and the shape of results
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["average", "task_arithmetic", "ties", "dare"])
def test_every_method_is_deterministic_and_keeps_names_shapes(name: str) -> None:
    base, ft = random_models(k=3)
    before = [flat(m).clone() for m in ft]
    a = run(name, base, ft, seed=11)
    b = run(name, base, ft, seed=11)
    assert list(a) == list(base)
    assert all(a[n].shape == base[n].shape and a[n].dtype == torch.float32 for n in base)
    assert torch.equal(flat(a), flat(b))
    assert all(torch.equal(flat(m), x) for m, x in zip(ft, before, strict=True))  # untouched


def test_dare_depends_on_the_seed_and_its_own_seed_wins() -> None:
    base, ft = random_models(k=3)
    assert not torch.equal(flat(run("dare", base, ft, seed=1)), flat(run("dare", base, ft, seed=2)))
    own_a = merge("dare", {"seed": 9}, base, ft, seed=1)  # the params' seed wins
    method = get_method("dare")
    own_b = method.merge(base, ft, {"seed": 9}, generator=torch.Generator().manual_seed(2))
    assert torch.equal(flat(own_a), flat(own_b))


@pytest.mark.parametrize(
    "name", ["average", "task_arithmetic", "ties", "dare", "tsv", "iso_c", "iso_cts", "wudi"]
)
def test_every_method_rejects_mismatched_models(name: str) -> None:
    base, ft = random_models(k=2)
    ft[1]["layer.w"] = torch.zeros(5, 4)
    with pytest.raises(ValueError, match=r"'layer.w' has shape \(5, 4\) in fine-tuned model 1"):
        run(name, base, ft)
    with pytest.raises(ValueError, match="at least one fine-tuned model"):
        run(name, base, [])


def test_every_registered_method_is_covered_here() -> None:
    """Training-free methods are tested here; learned ones in test_merging_learned."""
    learned = {"mergerec", "adamerging", "distill"}
    per_matrix = {"tsv", "iso_c", "iso_cts", "wudi"}  # tests/test_merging_matrices.py
    assert set(available_methods()) - learned - per_matrix == {
        "average",
        "task_arithmetic",
        "ties",
        "dare",
    }


def test_a_million_parameters_merge_quickly() -> None:
    import time

    g = torch.Generator().manual_seed(0)
    base = {f"p{i}": torch.randn(250_000, generator=g) for i in range(4)}
    ft = [
        {n: v + 0.01 * torch.randn(v.shape, generator=g) for n, v in base.items()} for _ in range(4)
    ]
    for name, params in [
        ("ties", {}),
        ("ties", {"scope": "tensor"}),
        ("dare", {"combine": "ties"}),
    ]:
        start = time.perf_counter()
        merge(name, params, base, ft, seed=0)
        # typically 50-150 ms on 2 CPU cores; the bound only catches per-entry Python loops
        assert time.perf_counter() - start < 10.0, name
