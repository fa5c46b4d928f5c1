"""Task vectors: what fine-tuning changed, τk = θk − θ0, and putting a change back.

Weights are ``dict[str, torch.Tensor]`` (parameter name -> float tensor), every model
with the same names and shapes. The merge steps work on task vectors stacked into one
``[K, N]`` matrix (row k = τk flattened in the base model's parameter order), so that
an election or a mean over tasks is one tensor operation; :class:`Layout` turns such a
row back into named tensors.

Task vectors come from Ilharco et al., "Editing Models with Task Arithmetic"
(ICLR 2023, arXiv:2212.04089).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

Weights = dict[str, torch.Tensor]
"""Parameter name -> tensor (float32 on the CPU at the interfaces of silorec)."""

Scope = Literal["tensor", "global"]


def _check_tensor(name: str, tensor: object, owner: str, finite: bool) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(
            f"parameter '{name}' of {owner} is a {type(tensor).__name__}, not a torch.Tensor"
        )
    if not tensor.is_floating_point():
        raise ValueError(
            f"parameter '{name}' of {owner} has dtype {tensor.dtype}; only floating-point "
            "parameters can be merged"
        )
    if finite and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"parameter '{name}' of {owner} holds NaN or infinite values")


def _check_like_base(
    base: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor], owner: str, finite: bool
) -> None:
    missing = [n for n in base if n not in other]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{owner} lacks parameter '{missing[0]}' of the base model{more}")
    extra = [n for n in other if n not in base]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ValueError(f"{owner} has parameter '{extra[0]}' that the base model lacks{more}")
    for name, tensor in other.items():
        _check_tensor(name, tensor, owner, finite)
        if tensor.shape != base[name].shape:
            raise ValueError(
                f"parameter '{name}' has shape {tuple(tensor.shape)} in {owner} but "
                f"{tuple(base[name].shape)} in the base model"
            )


def _check_base(base: Mapping[str, torch.Tensor], finite: bool) -> None:
    if not base:
        raise ValueError("the base model has no parameters")
    for name, tensor in base.items():
        _check_tensor(name, tensor, "the base model", finite)


def check_compatible(
    base: Mapping[str, torch.Tensor],
    finetuned: Sequence[Mapping[str, torch.Tensor]],
    *,
    finite: bool = True,
) -> None:
    """Raise ``ValueError`` unless every fine-tuned model has exactly the base model's
    parameter names and shapes, all floating point and (unless ``finite=False``)
    finite. The message names the parameter and the model ("fine-tuned model k" is
    ``finetuned[k]``, 0-based)."""
    _check_base(base, finite)
    if not finetuned:
        raise ValueError("merging needs at least one fine-tuned model")
    for index, model in enumerate(finetuned):
        _check_like_base(base, model, f"fine-tuned model {index}", finite)


def task_vectors(
    base: Mapping[str, torch.Tensor], finetuned: Sequence[Mapping[str, torch.Tensor]]
) -> list[Weights]:
    """τk = θk − θ0 for every fine-tuned model θk, as float32 weights in the base
    model's parameter order. Mismatched names or shapes raise ``ValueError``."""
    check_compatible(base, finetuned)
    return [
        {name: model[name].float() - tensor.float() for name, tensor in base.items()}
        for model in finetuned
    ]


def apply(
    base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], scale: float = 1.0
) -> Weights:
    """θ0 + scale · δ, parameter by parameter (float32, the base model's order).
    Names and shapes must match (``ValueError`` otherwise)."""
    _check_base(base, finite=False)
    _check_like_base(base, delta, "the delta", finite=False)
    return {name: tensor.float() + scale * delta[name].float() for name, tensor in base.items()}


@dataclass(frozen=True)
class Layout:
    """Where each parameter lives in a flattened model: names (in order) and shapes."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, weights: Mapping[str, torch.Tensor]) -> Layout:
        """The layout of ``weights``, in its own parameter order."""
        return cls(tuple(weights), tuple(t.shape for t in weights.values()))

    @property
    def numel(self) -> int:
        """Number of scalar parameters."""
        return sum(s.numel() for s in self.shapes)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Each parameter's span in a flattened row, in order."""
        out, start = [], 0
        for shape in self.shapes:
            out.append(slice(start, start + shape.numel()))
            start += shape.numel()
        return tuple(out)

    def groups(self, scope: Scope) -> tuple[slice, ...] | None:
        """The groups a per-row step works within: one per parameter tensor for
        ``"tensor"``, ``None`` (the whole row) for ``"global"``."""
        if scope == "tensor":
            return self.slices
        if scope == "global":
            return None
        raise ValueError(f"scope must be 'tensor' or 'global', not {scope!r}")

    def flatten(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One float32 vector ``[N]`` holding ``weights`` in this layout's order."""
        return torch.cat([weights[name].reshape(-1).float() for name in self.names])

    def unflatten(self, flat: torch.Tensor) -> Weights:
        """Named tensors from a vector ``[N]`` (views into ``flat``)."""
        if flat.shape != (self.numel,):
            raise ValueError(f"expected a vector of {self.numel} values, got {tuple(flat.shape)}")
        return {
            name: flat[s].view(shape)
            for name, shape, s in zip(self.names, self.shapes, self.slices, strict=True)
        }


def stack_task_vectors(
    base: Mapping[str, torch.Tensor], finetuned: Sequence[Mapping[str, torch.Tensor]]
) -> tuple[torch.Tensor, Layout]:
    """The task vectors as one float32 matrix ``[K, N]`` (row k = τk flattened in the
    base model's order) and the layout that unflattens a row."""
    check_compatible(base, finetuned, finite=False)
    layout = Layout.of(base)
    out = torch.empty(len(finetuned), layout.numel, dtype=torch.float32)
    for name, span in zip(layout.names, layout.slices, strict=True):
        theta0 = base[name].reshape(-1).float()
        for k, model in enumerate(finetuned):
            torch.sub(model[name].reshape(-1).float(), theta0, out=out[k, span])
    if not bool(torch.isfinite(out).all()):  # one pass instead of one per model
        check_compatible(base, finetuned)  # names the parameter and the model
    return out, layout
