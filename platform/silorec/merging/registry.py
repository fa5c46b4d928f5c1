"""Look up merge methods by name, and merge in one call.

Importing this module registers every built-in method (it imports
:mod:`silorec.merging.methods`). It never imports the scenario schema, which imports
it to validate ``[[merges]]`` entries.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

import silorec.merging.methods  # noqa: F401  (registers the built-in methods)
from silorec.merging.base import _METHODS, MergeContext, MergeMethod, register_method
from silorec.merging.task_vectors import Weights

__all__ = [
    "MergeContext",
    "MergeMethod",
    "available_methods",
    "get_method",
    "merge",
    "register_method",
]


def available_methods() -> list[str]:
    """Names of the registered merge methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> MergeMethod[Any]:
    """The merge method called ``name``; ``ValueError`` listing the available ones
    otherwise."""
    try:
        return _METHODS[name]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(name), available_methods(), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ValueError(
        f"unknown merge method {name!r}{hint}; available: {', '.join(available_methods())}"
    )


def merge(
    method_name: str,
    params: Mapping[str, Any] | None,
    base: Weights,
    finetuned: Sequence[Weights],
    *,
    seed: int,
    context: MergeContext | None = None,
) -> Weights:
    """Merge ``finetuned`` into one model with method ``method_name``: validates
    ``params`` (scenario spelling, e.g. ``{"lambda": 0.3}``) and draws any randomness
    from a generator seeded with ``seed``. Learned methods also need ``context``."""
    method = get_method(method_name)
    generator = torch.Generator().manual_seed(seed)
    return method.merge(
        base, finetuned, method.validate_params(params), generator=generator, context=context
    )
