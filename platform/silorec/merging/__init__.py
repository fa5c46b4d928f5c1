"""Model merging on the merge server: training-free methods and learned merges.

Weights are ``dict[str, torch.Tensor]``; task vectors are τk = θk − θ0
(:mod:`.task_vectors`). Merge methods (:mod:`.methods`, one module each) are short
compositions of orthogonal steps (:mod:`.steps`: sparsify, consensus, combine) and are
looked up by name in :mod:`.registry`::

    from silorec.merging import merge
    merged = merge("ties", {"density": 0.2, "lambda": 1.0}, base, finetuned, seed=0)

Learned merges (:mod:`.learned`: MergeRec, AdaMerging) train only merge coefficients
λ on pseudo-users the server builds from the uploaded item catalogues; they receive a
:class:`MergeContext` (the model and those catalogues) that training-free methods never
see.

Nothing here imports Flower or code that reads interactions.
"""

from silorec.merging.base import MergeContext, MergeMethod, MergeParams, register_method
from silorec.merging.registry import available_methods, get_method, merge
from silorec.merging.task_vectors import (
    Layout,
    Weights,
    apply,
    check_compatible,
    stack_task_vectors,
    task_vectors,
)

__all__ = [
    "Layout",
    "MergeContext",
    "MergeMethod",
    "MergeParams",
    "Weights",
    "apply",
    "available_methods",
    "check_compatible",
    "get_method",
    "merge",
    "register_method",
    "stack_task_vectors",
    "task_vectors",
]
