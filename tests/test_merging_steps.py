"""The merge steps and task vectors, on small tensors whose results are worked out by
hand in the comments."""

from __future__ import annotations

import pytest
import torch

from silorec.merging.steps import (
    agreement_mask,
    combine_mean,
    combine_sum,
    disjoint_mean,
    elect_sign,
    kept_count,
    magnitude_mask,
    magnitude_trim,
    random_drop,
    sign_consensus,
)
from silorec.merging.task_vectors import (
    Layout,
    apply,
    check_compatible,
    stack_task_vectors,
    task_vectors,
)


def t(*rows: list[float] | float) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# Three task vectors used by the consensus and combine tests:
#            col0  col1  col2  col3  col4
TAU = t(
    [1.0, -2.0, 0.5, 0.0, 1.0],
    [3.0, 1.0, -1.0, 0.0, -1.0],
    [-1.0, 0.5, -0.5, 0.0, 0.0],
)
# sums:       3.0  -0.5  -1.0   0.0   0.0
# col1: two tasks are positive, but the negative mass is larger -> elected −1.
# col3: all zero; col4: +1 and −1 cancel exactly -> elected 0.


# ---------------------------------------------------------------------------
# task vectors
# ---------------------------------------------------------------------------


def _models() -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    base = {"w": t([1.0, 2.0], [3.0, 4.0]), "b": t(0.5, -0.5)}
    ft = [
        {"w": t([2.0, 2.0], [3.0, 5.0]), "b": t(0.5, 0.5)},
        {"b": t(1.5, -0.5), "w": t([1.0, 0.0], [3.0, 4.0])},  # other order: fine
    ]
    return base, ft


def test_task_vectors_are_differences_in_base_order() -> None:
    base, ft = _models()
    tv = task_vectors(base, ft)
    assert list(tv[1]) == ["w", "b"]
    assert torch.equal(tv[0]["w"], t([1.0, 0.0], [0.0, 1.0]))
    assert torch.equal(tv[0]["b"], t(0.0, 1.0))
    assert torch.equal(tv[1]["w"], t([0.0, -2.0], [0.0, 0.0]))
    assert torch.equal(tv[1]["b"], t(1.0, 0.0))


def test_stack_and_layout_round_trip() -> None:
    base, ft = _models()
    tvs, layout = stack_task_vectors(base, ft)
    # rows: w (4 entries, row-major) then b (2 entries)
    assert torch.equal(tvs, t([1, 0, 0, 1, 0, 1], [0, -2, 0, 0, 1, 0]))
    assert layout.names == ("w", "b")
    assert layout.slices == (slice(0, 4), slice(4, 6))
    assert layout.groups("global") is None
    assert layout.groups("tensor") == layout.slices
    back = layout.unflatten(tvs[1])
    assert torch.equal(back["w"], t([0.0, -2.0], [0.0, 0.0]))
    assert torch.equal(layout.flatten(base), t(1, 2, 3, 4, 0.5, -0.5))


def test_apply_scales_the_delta() -> None:
    base, _ = _models()
    delta = {"w": t([1.0, 1.0], [1.0, 1.0]), "b": t(2.0, -2.0)}
    out = apply(base, delta, 0.5)
    assert torch.equal(out["w"], t([1.5, 2.5], [3.5, 4.5]))
    assert torch.equal(out["b"], t(1.5, -1.5))
    assert out["w"].dtype == torch.float32


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.pop("b"), r"fine-tuned model 1 lacks parameter 'b'"),
        (lambda m: m.update(extra=t(1.0)), r"fine-tuned model 1 has parameter 'extra'"),
        (
            lambda m: m.update(w=t(1.0, 2.0)),
            r"parameter 'w' has shape \(2,\) in fine-tuned model 1",
        ),
        (
            lambda m: m.update(b=torch.tensor([1, 2])),
            r"parameter 'b' of fine-tuned model 1 has dtype",
        ),
        (
            lambda m: m.update(b=t(float("nan"), 0.0)),
            r"parameter 'b' of fine-tuned model 1 holds NaN",
        ),
    ],
)
def test_mismatched_models_are_rejected_by_name_and_index(change, match) -> None:
    base, ft = _models()
    change(ft[1])
    with pytest.raises(ValueError, match=match):
        task_vectors(base, ft)
    with pytest.raises(ValueError, match=match):
        stack_task_vectors(base, ft)


def test_no_models_or_empty_base_rejected() -> None:
    base, _ = _models()
    with pytest.raises(ValueError, match="at least one fine-tuned model"):
        check_compatible(base, [])
    with pytest.raises(ValueError, match="no parameters"):
        check_compatible({}, [{}])


def test_apply_rejects_mismatched_delta() -> None:
    base, _ = _models()
    with pytest.raises(ValueError, match=r"parameter 'b' has shape \(3,\) in the delta"):
        apply(base, {"w": base["w"], "b": t(1.0, 2.0, 3.0)}, 1.0)


# ---------------------------------------------------------------------------
# sparsify: magnitude trim
# ---------------------------------------------------------------------------


def test_kept_count_rounds_half_up_and_keeps_at_least_one() -> None:
    assert kept_count(6, 0.5) == 3
    assert kept_count(5, 0.5) == 3  # 2.5 -> 3
    assert kept_count(5, 0.3) == 2  # 1.5 -> 2
    assert kept_count(100, 0.29) == 29  # 28.999999999999996 in floating point
    assert kept_count(10, 0.01) == 1  # never erase a whole group
    assert kept_count(7, 1.0) == 7
    assert kept_count(0, 0.5) == 0


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_density_outside_0_1_is_rejected(density: float) -> None:
    with pytest.raises(ValueError, match="density must be in"):
        magnitude_trim(t(1.0, 2.0), density)


def test_trim_keeps_the_largest_magnitudes() -> None:
    # |values| 0.5 3 1 0 2 1; keep 3 of 6: -3, -2, and the first of the two 1.0s
    tv = t(0.5, -3.0, 1.0, 0.0, -2.0, 1.0)
    assert torch.equal(magnitude_trim(tv, 0.5), t(0.0, -3.0, 1.0, 0.0, -2.0, 0.0))
    assert magnitude_mask(tv, 0.5).tolist() == [False, True, True, False, True, False]


def test_trim_ties_at_threshold_keep_exact_count_lowest_index_first() -> None:
    tv = t([1.0, -1.0, 1.0, 1.0], [2.0, 1.0, -1.0, 1.0])
    # row 0: four ties, keep 2 -> indices 0, 1; row 1: 2 then one of three ties -> index 1
    assert torch.equal(magnitude_trim(tv, 0.5), t([1.0, -1.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0]))
    assert magnitude_mask(tv, 0.5).sum(dim=1).tolist() == [2, 2]
    # a tensor full of zeros still keeps exactly the count (all values stay 0)
    zeros = torch.zeros(2, 5)
    assert magnitude_mask(zeros, 0.4).sum(dim=1).tolist() == [2, 2]
    assert torch.equal(magnitude_trim(zeros, 0.4), zeros)


def test_trim_density_one_is_identity() -> None:
    assert torch.equal(magnitude_trim(TAU, 1.0), TAU)
    assert torch.equal(magnitude_trim(TAU, 1.0, groups=[slice(0, 2), slice(2, 5)]), TAU)


def test_trim_scope_tensor_versus_global() -> None:
    # two parameters: a = columns 0..3, b = columns 4..5
    groups = [slice(0, 4), slice(4, 6)]
    tv = t(
        [4.0, -1.0, 2.0, 0.5, 10.0, 20.0],
        [-1.0, -5.0, 3.0, 3.0, 0.0, 0.1],
    )
    # per tensor, density 0.5: a keeps 2 of 4, b keeps 1 of 2
    per_tensor = t(
        [4.0, 0.0, 2.0, 0.0, 0.0, 20.0],
        [0.0, -5.0, 3.0, 0.0, 0.0, 0.1],  # 3.0 tie: the lower index wins
    )
    # global, density 0.5: 3 of 6 over the whole row
    global_ = t(
        [4.0, 0.0, 0.0, 0.0, 10.0, 20.0],
        [0.0, -5.0, 3.0, 3.0, 0.0, 0.0],
    )
    assert torch.equal(magnitude_trim(tv, 0.5, groups=groups), per_tensor)
    assert torch.equal(magnitude_trim(tv, 0.5), global_)


@pytest.mark.parametrize("density", [0.1, 0.37, 0.5, 0.63, 0.9])
def test_trim_matches_a_stable_sort_reference(density: float) -> None:
    g = torch.Generator().manual_seed(0)
    tvs = torch.randint(-3, 4, (3, 10_000), generator=g).float()  # many ties
    k = kept_count(10_000, density)
    # reference: sort by |value| descending, ties in index order, keep the first k
    order = torch.sort(-tvs.abs(), dim=1, stable=True).indices[:, :k]
    expected = torch.zeros_like(tvs, dtype=torch.bool).scatter_(1, order, True)
    mask = magnitude_mask(tvs, density)
    assert torch.equal(mask, expected)
    assert mask.sum(dim=1).tolist() == [k] * 3


# ---------------------------------------------------------------------------
# sparsify: random drop (DARE)
# ---------------------------------------------------------------------------


def test_random_drop_rescales_kept_entries_exactly() -> None:
    p = 0.3
    tv = torch.arange(1, 100_001, dtype=torch.float32).reshape(2, -1)  # no zeros
    out = random_drop(tv, p, generator=torch.Generator().manual_seed(7))
    kept = out != 0
    assert torch.equal(out[kept], tv[kept] / (1.0 - p))
    assert abs((~kept).float().mean().item() - p) < 0.01  # std of the fraction ~0.0015


def test_random_drop_is_reproducible_with_the_generator() -> None:
    tv = torch.randn(4, 1000, generator=torch.Generator().manual_seed(1))
    a = random_drop(tv, 0.9, generator=torch.Generator().manual_seed(3))
    b = random_drop(tv, 0.9, generator=torch.Generator().manual_seed(3))
    c = random_drop(tv, 0.9, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_drop_zero_rate_is_identity_and_rate_one_rejected() -> None:
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_drop(TAU, 0.0, generator=g), TAU)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="drop_rate must be in"):
            random_drop(TAU, bad, generator=g)


# ---------------------------------------------------------------------------
# consensus
# ---------------------------------------------------------------------------


def test_sign_election_by_total_mass() -> None:
    assert elect_sign(TAU).tolist() == [1.0, -1.0, -1.0, 0.0, 0.0]


def test_agreement_masks() -> None:
    expected = [
        [True, True, False, False, False],
        [True, False, True, False, False],
        [False, False, True, False, False],
    ]
    assert sign_consensus(TAU).tolist() == expected
    assert agreement_mask(TAU, elect_sign(TAU)).tolist() == expected


# ---------------------------------------------------------------------------
# combine
# ---------------------------------------------------------------------------


def test_sum_and_mean() -> None:
    assert torch.equal(combine_sum(TAU), t(3.0, -0.5, -1.0, 0.0, 0.0))
    assert torch.allclose(combine_mean(TAU), t(1.0, -1 / 6, -1 / 3, 0.0, 0.0))


def test_disjoint_mean_over_agreeing_entries() -> None:
    # col0: (1 + 3) / 2; col1: −2 alone; col2: (−1 − 0.5) / 2; col3, col4: nobody -> 0
    assert torch.equal(disjoint_mean(TAU, sign_consensus(TAU)), t(2.0, -2.0, -0.75, 0.0, 0.0))


def test_disjoint_mean_ignores_selected_zeros() -> None:
    tv = t([2.0, 0.0, 0.0], [0.0, 6.0, 0.0])
    assert torch.equal(disjoint_mean(tv, torch.ones(2, 3, dtype=torch.bool)), t(2.0, 6.0, 0.0))


def test_layout_rejects_a_wrong_length_vector() -> None:
    layout = Layout.of({"a": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="4 values"):
        layout.unflatten(torch.zeros(5))
