"""What a merge method is, and the table the methods register themselves in.

A method is a name, a strict pydantic model of its parameters, a one-line summary and
a function ``(base, finetuned, params, *, generator) -> Weights``. Method modules
register with :func:`register_method`; :mod:`silorec.merging.registry` imports them
all and looks methods up. This module imports no method, so there is no cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import torch
from pydantic import BaseModel, ConfigDict

from silorec.merging.task_vectors import Weights


class MergeParams(BaseModel):
    """Base of every method's parameter model: unknown keys are errors (a typo such as
    ``lamda`` is reported by name, never ignored), values are frozen and not coerced
    from other types (``"0.3"`` is not a number). Fields with a Python-keyword name use
    an alias (``scale`` is written ``lambda``); both spellings are accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


P = TypeVar("P", bound=MergeParams)


@dataclass
class MergeContext:
    """What a *learned* merge needs beyond the weights: the model and, for each
    fine-tuned model (same order), its domain's item inputs built from what the node
    uploaded (what the model encodes items from: the catalogue's frozen text
    embeddings for text-seq, its tokenised item texts for text-encoder; see
    :mod:`silorec.models`). Training-free methods never see it.

    ``item_embeddings`` are the catalogues' frozen text embeddings, which pseudo-user
    sampling clusters; ``None`` when the item inputs are those embeddings (text-seq).
    ``mean_lengths`` are the domains' mean history lengths (interactions per user,
    from the describe replies), which rolled-out pseudo-users imitate; ``None`` when
    unknown. A method records what it learned (coefficients, loss curve) in
    ``diagnostics``.
    """

    item_inputs: Sequence[Any]
    build_model: Callable[[], torch.nn.Module]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    log: Callable[[str], None] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    item_embeddings: Sequence[torch.Tensor] | None = None
    mean_lengths: Sequence[float] | None = None

    def catalogue_embeddings(self) -> Sequence[torch.Tensor]:
        """Each domain's frozen text embeddings, [n_items, text_dim]."""
        return self.item_inputs if self.item_embeddings is None else self.item_embeddings


@dataclass(frozen=True)
class MergeMethod(Generic[P]):
    """One registered merge method. ``needs_context`` methods (learned merges) are
    called with a :class:`MergeContext` as well."""

    name: str
    params_model: type[P]
    summary: str
    function: Callable[..., Weights]
    reference: str = ""
    needs_context: bool = False

    def validate_params(self, params: Mapping[str, Any] | BaseModel | None = None) -> P:
        """``params`` as this method's parameter model (a mapping is validated)."""
        if params is None:
            params = {}
        if isinstance(params, self.params_model):
            return params
        if isinstance(params, BaseModel):
            raise TypeError(
                f"merge method '{self.name}' takes {self.params_model.__name__}, "
                f"not {type(params).__name__}"
            )
        return self.params_model.model_validate(dict(params))

    def merge(
        self,
        base: Weights,
        finetuned: Sequence[Weights],
        params: Mapping[str, Any] | BaseModel | None = None,
        *,
        generator: torch.Generator,
        context: MergeContext | None = None,
    ) -> Weights:
        """Merge ``finetuned`` (fine-tuned from ``base``) into one float32 model with
        the base model's parameter order. Randomised methods draw from ``generator``;
        the others ignore it. Incompatible models raise ``ValueError`` (the methods
        build their task vectors with :func:`~silorec.merging.task_vectors.stack_task_vectors`,
        which checks)."""
        checked = self.validate_params(params)
        if not self.needs_context:
            return self.function(base, list(finetuned), checked, generator=generator)
        if context is None:
            raise ValueError(
                f"merge method '{self.name}' learns its weights: it needs a MergeContext"
            )
        if len(context.item_inputs) != len(finetuned):
            raise ValueError(
                f"merge method '{self.name}': {len(context.item_inputs)} domains of item "
                f"inputs for {len(finetuned)} fine-tuned models"
            )
        return self.function(base, list(finetuned), checked, generator=generator, context=context)


_METHODS: dict[str, MergeMethod[Any]] = {}


def register_method(
    name: str,
    params_model: type[P],
    summary: str,
    reference: str = "",
    *,
    needs_context: bool = False,
) -> Callable[[Callable[..., Weights]], Callable[..., Weights]]:
    """Decorator: register the decorated function as merge method ``name``.

    The function keeps its own name and signature
    ``(base, finetuned, params, *, generator) -> Weights``, plus ``context`` (a
    :class:`MergeContext`) for ``needs_context`` methods.
    """
    if not summary or "\n" in summary:
        raise ValueError(f"merge method '{name}' needs a one-line summary")
    if not (isinstance(params_model, type) and issubclass(params_model, MergeParams)):
        raise TypeError(f"merge method '{name}': params_model must subclass MergeParams")

    def decorate(function: Callable[..., Weights]) -> Callable[..., Weights]:
        if name in _METHODS:
            raise ValueError(f"merge method '{name}' is registered twice")
        _METHODS[name] = MergeMethod(
            name, params_model, summary, function, reference, needs_context
        )
        return function

    return decorate
