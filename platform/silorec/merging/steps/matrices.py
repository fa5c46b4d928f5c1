"""Per-weight-matrix merge steps: combine the K task matrices of one 2-D parameter.

Task arithmetic and TIES treat a model as one long vector. The spectral and
interference-aware merges (TSV-M, ISO-C, ISO-CTS, WUDI) look at each weight matrix as
a linear map: its singular directions, the inputs its rows respond to. Every function
here takes the task matrices of one parameter stacked as ``[K, out, in]`` and returns
the merged task matrix ``[out, in]`` (before the method's scale λ).
:func:`matrix_wise` applies one of them to every 2-D parameter of a stacked model and
averages the task vectors of the others (biases, norms), as the papers do.

All functions work in float64 internally: the SVDs and the solve are on small
matrices here (the recommenders' layers are at most a few hundred wide), and the
extra precision keeps rank decisions stable on nearly orthogonal task vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from silorec.merging.steps.combine import combine_mean
from silorec.merging.task_vectors import Layout, Weights, apply, stack_task_vectors

#: ``[K, out, in]`` task matrices of one parameter -> merged ``[out, in]``.
MatrixStep = Callable[[torch.Tensor], torch.Tensor]


def matrix_wise(
    task_vectors: torch.Tensor,
    layout: Layout,
    step: MatrixStep,
    rest: Callable[[torch.Tensor], torch.Tensor] = combine_mean,
) -> torch.Tensor:
    """One merged task vector ``[N]``: ``step`` on every 2-D parameter's ``[K, out, in]``
    task matrices, ``rest`` (default: the mean) on every other parameter's ``[K, n]``.

    2-D parameters are the linear layers' weights and the embedding tables; the
    reference implementations (FusionBench) treat every 2-D tensor as a matrix too.
    """
    merged = torch.empty(task_vectors.shape[1], dtype=task_vectors.dtype)
    for shape, span in zip(layout.shapes, layout.slices, strict=True):
        block = task_vectors[:, span]
        if len(shape) == 2 and min(shape) > 1:
            matrices = block.reshape(len(block), *shape)
            merged[span] = step(matrices).reshape(-1).to(task_vectors.dtype)
        else:
            merged[span] = rest(block)
    return merged


def merge_matrix_wise(
    base: Mapping[str, torch.Tensor],
    finetuned: Sequence[Mapping[str, torch.Tensor]],
    step: MatrixStep,
    scale: float,
) -> Weights:
    """θ0 + λ · :func:`matrix_wise` of the task vectors: the whole of TSV-M, ISO-C,
    ISO-CTS and WUDI once their per-matrix ``step`` is chosen."""
    tvs, layout = stack_task_vectors(base, finetuned)
    return apply(base, layout.unflatten(matrix_wise(tvs, layout, step)), scale)


def _orthogonal_factor(matrix: torch.Tensor) -> torch.Tensor:
    """The nearest matrix with orthonormal columns (polar factor): SVD ``P S Qᵀ`` ->
    ``P Qᵀ``."""
    p, _, qh = torch.linalg.svd(matrix, full_matrices=False)
    return p @ qh


def task_singular_vectors(
    matrices: torch.Tensor, rank_fraction: float | None = None
) -> torch.Tensor:
    """TSV-Merge on one parameter: keep each task's top ``rank_fraction · min(out, in)``
    singular components (default ``1/K``, so that K tasks fill the space once), stack
    the left and the right singular vectors of all tasks, replace each stack by its
    nearest orthonormal matrix (this decorrelates the tasks' directions, which is
    what removes the interference) and recombine with the tasks' singular values.

    Gargiulo et al., "Task Singular Vectors: Reducing Task Interference in Model
    Merging", CVPR 2025, arXiv:2412.00081.
    """
    k_tasks, rows, cols = matrices.shape
    fraction = 1.0 / k_tasks if rank_fraction is None else rank_fraction
    rank = max(1, int(min(rows, cols) * fraction))
    lefts, values, rights = [], [], []
    for matrix in matrices.double():
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        lefts.append(u[:, :rank])
        values.append(s[:rank])
        rights.append(vh[:rank].T)
    u_all, s_all, v_all = torch.cat(lefts, 1), torch.cat(values), torch.cat(rights, 1)
    if u_all.shape[1] <= rows and v_all.shape[1] <= cols:  # decorrelate (else: too many)
        u_all, v_all = _orthogonal_factor(u_all), _orthogonal_factor(v_all)
    return (u_all * s_all) @ v_all.T


def isotropic(matrices: torch.Tensor) -> torch.Tensor:
    """ISO-C on one parameter: the sum of the task matrices with its singular values
    all set to their mean (a flat spectrum), so that the few directions where the
    tasks agree no longer drown the directions that only one task uses.

    Marczak et al., "No Task Left Behind: Isotropic Model Merging with Common and
    Task-Specific Subspaces", ICML 2025, arXiv:2502.04959.
    """
    u, s, vh = torch.linalg.svd(matrices.double().sum(dim=0), full_matrices=False)
    return (u * s.mean()) @ vh


def isotropic_with_task_subspaces(
    matrices: torch.Tensor, common_fraction: float = 0.8
) -> torch.Tensor:
    """ISO-CTS on one parameter: the top ``common_fraction`` of the summed matrix's
    singular directions (the common subspace), plus an equal number of each task's
    own top directions outside it, orthonormalised together and recombined with a
    flat spectrum (the mean of the kept singular values). Same paper as
    :func:`isotropic`.
    """
    k_tasks, rows, cols = matrices.shape
    full = min(rows, cols)
    tasks = matrices.double()
    u, s, vh = torch.linalg.svd(tasks.sum(dim=0), full_matrices=False)
    common = int(full * common_fraction)
    per_task = (full - common) // k_tasks
    common = full - per_task * k_tasks  # the task-specific part divides evenly
    lefts, values, rights = [u[:, :common]], [s[:common]], [vh[:common].T]
    if per_task:
        projector = u[:, :common] @ u[:, :common].T
        for matrix in tasks:
            tu, ts, tvh = torch.linalg.svd(matrix - projector @ matrix, full_matrices=False)
            lefts.append(tu[:, :per_task])
            values.append(ts[:per_task])
            rights.append(tvh[:per_task].T)
    u_all = _orthogonal_factor(torch.cat(lefts, 1))
    v_all = _orthogonal_factor(torch.cat(rights, 1))
    return (u_all * torch.cat(values).mean()) @ v_all.T


def interference_minimiser(matrices: torch.Tensor, rcond: float = 1e-6) -> torch.Tensor:
    """WUDI on one parameter, solved exactly: the task matrix τ minimising
    ``Σk ‖(τ − τk) τkᵀ‖²_F / ‖τk‖²_F``.

    The rows of a task matrix approximately span the inputs its layer sees on that
    task, so ``(τ − τk) τkᵀ`` is the interference the merge adds on task k's inputs;
    no data is needed. Setting the gradient to zero gives the normal equations
    ``τ A = B`` with ``A = Σk τkᵀτk / ‖τk‖²`` and ``B = Σk τk τkᵀτk / ‖τk‖²``; the
    minimum-norm solution ``B A⁺`` (eigenvalues of ``A`` below ``rcond`` times the
    largest dropped) is the point the paper's gradient descent from ``Σk τk``
    approaches (its gradient never leaves the span of the tasks' rows).

    Cheng et al., "Whoever Started the Interference Should End It: Guiding Data-Free
    Model Merging via Task Vectors", ICML 2025, arXiv:2503.08099.
    """
    tasks = matrices.double()
    cols = tasks.shape[2]
    norms = tasks.flatten(1).square().sum(dim=1)
    gram = torch.zeros(cols, cols, dtype=torch.float64)
    target = torch.zeros(tasks.shape[1], cols, dtype=torch.float64)
    for matrix, norm in zip(tasks, norms, strict=True):
        if norm == 0:
            continue  # an unchanged matrix asks for nothing
        g = matrix.T @ matrix / norm
        gram += g
        target += matrix @ g
    if not bool(norms.any()):
        return torch.zeros_like(tasks[0])
    eigenvalues, vectors = torch.linalg.eigh(gram)
    keep = eigenvalues > rcond * eigenvalues.max()
    inverse = (vectors[:, keep] / eigenvalues[keep]) @ vectors[:, keep].T
    return target @ inverse
