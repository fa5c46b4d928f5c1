"""Exact per-example gradients of the whole recommender, for DP-SGD.

Why not Opacus's ``GradSampleModule``: its hooks take the first dimension of a layer's
input as the batch, but the item adaptor runs once per batch on the whole catalogue
([n_items, text_dim]) and its output is shared by every example, so hooks would see
items, not examples. Instead, with ``torch.func``:

1. encode the catalogue once, keeping the adaptor's VJP: ``r = E(φ; text)``;
2. ``vmap`` the gradient of one example's loss with respect to the sequence encoder's
   parameters ψ and to the item representations r: ``(∂ℓᵢ/∂ψ, ∂ℓᵢ/∂r)``;
3. push each example's ``∂ℓᵢ/∂r`` through the adaptor with a batched (vmapped) VJP:
   ``∂ℓᵢ/∂φ = (∂r/∂φ)ᵀ ∂ℓᵢ/∂r``.

This is the chain rule split at r, so the per-example gradients are exact, and the
catalogue is encoded once per batch rather than once per example.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vjp, vmap

from silorec.models.text_seq import TextSeqRec
from silorec.training.finetune import per_example_losses

PerExampleGrads = dict[str, torch.Tensor]

#: Prefix of the model's parameters inside the wrappers below.
_PREFIX = "model."


class _ItemEncoder(nn.Module):
    """``model.encode_items`` as a module's ``forward`` (``functional_call`` only
    calls ``forward``)."""

    def __init__(self, model: TextSeqRec) -> None:
        super().__init__()
        self.model = model

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        return self.model.encode_items(text_embeddings)


class _ExampleLoss(nn.Module):
    """One example's next-item loss given the item representations."""

    def __init__(self, model: TextSeqRec) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, item_repr: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        return per_example_losses(self.model, item_repr, inputs[None], targets[None])[0]


def item_parameter_names(model: TextSeqRec) -> list[str]:
    """Parameters of the item adaptor (the part applied to the catalogue)."""
    return [f"adaptor.{name}" for name, _ in model.adaptor.named_parameters()]


def per_example_gradients(
    model: TextSeqRec, text_embeddings: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor
) -> tuple[PerExampleGrads, torch.Tensor]:
    """``({name: [B, *shape]}, losses [B])``: every parameter's gradient of each
    example's loss (:func:`per_example_losses`), and the losses.

    Dropout draws a different mask per example (as a batched forward would) when the
    model is in training mode.
    """
    params = {name: p.detach() for name, p in model.named_parameters()}
    item_names = set(item_parameter_names(model))
    item_params = {_PREFIX + n: params[n] for n in params if n in item_names}
    sequence_params = {_PREFIX + n: params[n] for n in params if n not in item_names}
    item_encoder, example_loss = _ItemEncoder(model), _ExampleLoss(model)

    item_repr, item_vjp = vjp(
        lambda p: functional_call(item_encoder, p, (text_embeddings,)), item_params
    )

    def loss(
        seq_params: dict[str, torch.Tensor],
        items: torch.Tensor,
        example_inputs: torch.Tensor,
        example_targets: torch.Tensor,
    ) -> torch.Tensor:
        return functional_call(example_loss, seq_params, (items, example_inputs, example_targets))

    (sequence_grads, item_repr_grads), losses = vmap(
        grad_and_value(loss, argnums=(0, 1)),
        in_dims=(None, None, 0, 0),
        randomness="different",
    )(sequence_params, item_repr, inputs, targets)
    (item_grads,) = vmap(item_vjp)(item_repr_grads)
    grads = {**sequence_grads, **item_grads}
    return {name: grads[_PREFIX + name] for name in params}, losses.detach()
