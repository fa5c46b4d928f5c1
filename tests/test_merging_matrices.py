"""The per-weight-matrix merges (TSV-M, ISO-C, ISO-CTS, WUDI): the properties that
define each one, checked on random matrices, and how they treat non-matrix weights."""

from __future__ import annotations

import pytest
import torch

from silorec.merging import merge
from silorec.merging.steps import (
    interference_minimiser,
    isotropic,
    isotropic_with_task_subspaces,
    matrix_wise,
    task_singular_vectors,
)
from silorec.merging.task_vectors import Layout, stack_task_vectors


def random_matrices(k: int, rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, rows, cols, generator=torch.Generator().manual_seed(seed)).double()


def block_diagonal_tasks(k: int, size: int) -> torch.Tensor:
    """K task matrices that act on disjoint input and output coordinates."""
    g = torch.Generator().manual_seed(1)
    out = torch.zeros(k, k * size, k * size, dtype=torch.float64)
    for i in range(k):
        block = slice(i * size, (i + 1) * size)
        out[i, block, block] = torch.randn(size, size, generator=g, dtype=torch.float64)
    return out


def wudi_objective(merged: torch.Tensor, tasks: torch.Tensor) -> float:
    return float(sum(((merged - t) @ t.T).square().sum() / t.square().sum() for t in tasks))


def test_matrix_wise_runs_the_step_on_matrices_and_averages_the_rest() -> None:
    base = {"w": torch.zeros(3, 4), "b": torch.zeros(4), "column": torch.zeros(5, 1)}
    g = torch.Generator().manual_seed(0)
    models = [{n: torch.randn(t.shape, generator=g) for n, t in base.items()} for _ in range(3)]
    tvs, layout = stack_task_vectors(base, models)
    merged = layout.unflatten(matrix_wise(tvs, layout, lambda m: torch.full(m.shape[1:], 7.0)))
    assert torch.equal(merged["w"], torch.full((3, 4), 7.0))
    mean = lambda n: torch.stack([m[n] for m in models]).mean(0)  # noqa: E731
    assert torch.allclose(merged["b"], mean("b"))
    assert torch.allclose(merged["column"], mean("column"))  # a [n, 1] tensor is a vector


def test_tsv_of_one_task_at_full_rank_is_that_task() -> None:
    tasks = random_matrices(1, 6, 4)
    assert torch.allclose(task_singular_vectors(tasks), tasks[0])


def test_tsv_of_tasks_on_disjoint_subspaces_is_their_sum() -> None:
    tasks = block_diagonal_tasks(3, 2)  # each of rank 2 = 6 / 3
    assert torch.allclose(task_singular_vectors(tasks), tasks.sum(0), atol=1e-10)


def test_tsv_decorrelates_the_kept_directions() -> None:
    tasks = random_matrices(3, 8, 8)
    merged = task_singular_vectors(tasks)  # rank 2 each, 6 directions in all
    assert torch.linalg.matrix_rank(merged) == 6
    # Not simply the sum of the truncated tasks: the directions were orthogonalised.
    truncated = []
    for m in tasks:
        u, s, vh = torch.linalg.svd(m)
        truncated.append((u[:, :2] * s[:2]) @ vh[:2])
    assert not torch.allclose(merged, torch.stack(truncated).sum(0), atol=1e-3)


def test_iso_c_flattens_the_spectrum_of_the_sum() -> None:
    tasks = random_matrices(3, 7, 5)
    merged = isotropic(tasks)
    s_sum = torch.linalg.svdvals(tasks.sum(0))
    s_merged = torch.linalg.svdvals(merged)
    assert torch.allclose(s_merged, torch.full_like(s_merged, float(s_sum.mean())))
    # Same singular subspaces as the sum: projecting the sum onto them loses nothing.
    u, _, vh = torch.linalg.svd(merged, full_matrices=False)
    assert torch.allclose(u @ u.T @ tasks.sum(0) @ vh.T @ vh, tasks.sum(0), atol=1e-10)


def test_iso_cts_with_only_the_common_space_is_iso_c() -> None:
    tasks = random_matrices(3, 6, 6)
    assert torch.allclose(isotropic_with_task_subspaces(tasks, 1.0), isotropic(tasks))


def test_iso_cts_keeps_task_specific_directions_with_a_flat_spectrum() -> None:
    tasks = random_matrices(2, 10, 10)
    merged = isotropic_with_task_subspaces(tasks, 0.6)  # 6 common + 2 per task
    s = torch.linalg.svdvals(merged)
    assert int((s > 1e-8).sum()) == 10
    assert torch.allclose(s, s.mean().expand_as(s))


def test_wudi_solves_its_objective() -> None:
    tasks = random_matrices(3, 5, 12)  # rows span 5 of 12 input dimensions per task
    merged = interference_minimiser(tasks)
    best = wudi_objective(merged, tasks)
    assert best < wudi_objective(tasks.sum(0), tasks)
    g = torch.Generator().manual_seed(2)
    for _ in range(5):  # any perturbation is worse
        assert (
            wudi_objective(
                merged + 1e-3 * torch.randn(merged.shape, generator=g, dtype=torch.float64), tasks
            )
            > best
        )
    # The gradient vanishes: Σk (τ − τk) τkᵀτk / ‖τk‖² = 0.
    grad = sum((merged - t) @ t.T @ t / t.square().sum() for t in tasks)
    assert float(grad.abs().max()) < 1e-9


def test_wudi_of_tasks_on_disjoint_inputs_is_their_sum() -> None:
    tasks = block_diagonal_tasks(3, 2)
    assert torch.allclose(interference_minimiser(tasks), tasks.sum(0), atol=1e-10)


def test_wudi_ignores_a_task_that_did_not_change_the_matrix() -> None:
    tasks = random_matrices(2, 4, 6)
    with_zero = torch.cat([tasks, torch.zeros(1, 4, 6, dtype=torch.float64)])
    assert torch.allclose(interference_minimiser(with_zero), interference_minimiser(tasks))
    assert torch.equal(interference_minimiser(torch.zeros(2, 3, 3)), torch.zeros(3, 3))


@pytest.mark.parametrize("method", ["tsv", "iso_c", "iso_cts", "wudi"])
def test_methods_scale_by_lambda_and_average_the_vectors(method: str) -> None:
    g = torch.Generator().manual_seed(3)
    base = {"w": torch.randn(6, 8, generator=g), "b": torch.randn(6, generator=g)}
    models = [{n: t + torch.randn(t.shape, generator=g) for n, t in base.items()} for _ in range(3)]
    one = merge(method, {"lambda": 1.0}, base, models, seed=0)
    half = merge(method, {"lambda": 0.5}, base, models, seed=0)
    assert torch.allclose(half["w"] - base["w"], 0.5 * (one["w"] - base["w"]), atol=1e-6)
    mean_b = torch.stack([m["b"] for m in models]).mean(0)
    assert torch.allclose(one["b"], mean_b, atol=1e-6)
    assert one["w"].dtype == torch.float32 and list(one) == list(base)
    layout = Layout.of(base)
    assert layout.flatten(one).isfinite().all()


def test_methods_reject_unknown_parameters() -> None:
    base = {"w": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="rank_fractio"):
        merge("tsv", {"rank_fractio": 0.5}, base, [base, base], seed=0)
    with pytest.raises(ValueError, match="common_fraction"):
        merge("iso_cts", {"common_fraction": 1.5}, base, [base, base], seed=0)
