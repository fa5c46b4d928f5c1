"""The building blocks of the merge methods, each a pure function on task vectors
stacked as rows of a ``[K, N]`` tensor:

- sparsify (one task vector at a time): :func:`magnitude_trim` (TIES),
  :func:`random_drop` (DARE);
- consensus (across tasks): :func:`sign_consensus` = :func:`agreement_mask` with the
  :func:`elect_sign` (TIES);
- combine (across tasks, ``[K, N]`` -> ``[N]``): :func:`combine_sum`,
  :func:`combine_mean`, :func:`disjoint_mean` (and its per-task
  :func:`disjoint_contributions`);
- per weight matrix (``[K, out, in]`` -> ``[out, in]``, applied by :func:`matrix_wise`):
  :func:`task_singular_vectors` (TSV-M), :func:`isotropic` (ISO-C),
  :func:`isotropic_with_task_subspaces` (ISO-CTS), :func:`interference_minimiser`
  (WUDI).

A merge method is a short composition of these (see :mod:`silorec.merging.methods`).
"""

from silorec.merging.steps.combine import (
    combine_mean,
    combine_sum,
    disjoint_contributions,
    disjoint_mean,
)
from silorec.merging.steps.consensus import agreement_mask, elect_sign, sign_consensus
from silorec.merging.steps.matrices import (
    interference_minimiser,
    isotropic,
    isotropic_with_task_subspaces,
    matrix_wise,
    merge_matrix_wise,
    task_singular_vectors,
)
from silorec.merging.steps.sparsify import kept_count, magnitude_mask, magnitude_trim, random_drop

__all__ = [
    "agreement_mask",
    "combine_mean",
    "combine_sum",
    "disjoint_contributions",
    "disjoint_mean",
    "elect_sign",
    "interference_minimiser",
    "isotropic",
    "isotropic_with_task_subspaces",
    "kept_count",
    "magnitude_mask",
    "magnitude_trim",
    "matrix_wise",
    "merge_matrix_wise",
    "random_drop",
    "sign_consensus",
    "task_singular_vectors",
]
