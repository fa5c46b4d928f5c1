"""The privacy-relevant steps of DP-SGD, on tensors: Poisson sampling, per-example
clipping, Gaussian noise, and the schedule the accountant is told about.

One DP-SGD step on a Poisson sample S (each record kept independently with
probability q) releases ``(Σ_{i∈S} clip(gᵢ, C) + N(0, σ² C² I)) / (q N)``: the sum's L2
sensitivity to one record is C, so each step is the subsampled Gaussian mechanism with
noise multiplier σ at rate q, which is what the RDP accountant composes. Dividing by
the *expected* batch size q N (not |S|) keeps the release a function of the noisy sum
only, as Opacus does.

Sampling and noise draw from generators seeded from the operating system's entropy by
default. Privacy amplification by sampling assumes the adversary does not know which
records were sampled, and the merge server knows the scenario's seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from silorec.privacy.accounting import GaussianSteps

#: Added to per-example norms before dividing (as Opacus does), so a zero gradient
#: does not divide by zero.
NORM_EPSILON = 1e-6


@dataclass(frozen=True)
class DpSgdSchedule:
    """How DP-SGD visits ``n_examples`` records: Poisson samples at rate
    ``batch_size / n_examples`` (1 when the batch covers everything), and
    ``ceil(n_examples / batch_size)`` steps per epoch, so an epoch visits each record
    once in expectation."""

    n_examples: int
    batch_size: int

    def __post_init__(self) -> None:
        if self.n_examples < 1:
            raise ValueError("DP-SGD needs at least one training example")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")

    @property
    def sample_rate(self) -> float:
        return min(1.0, self.batch_size / self.n_examples)

    @property
    def expected_batch_size(self) -> float:
        return self.sample_rate * self.n_examples

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_examples / self.batch_size)

    def gaussian_steps(self, noise_multiplier: float, epochs: int) -> GaussianSteps:
        """``epochs`` epochs of this schedule, for the accountant."""
        return GaussianSteps(noise_multiplier, self.sample_rate, self.steps_per_epoch * epochs)

    def poisson_sample(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of one Poisson sample (possibly empty)."""
        return np.flatnonzero(rng.random(self.n_examples) < self.sample_rate)


def per_example_norms(grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """[B]: the L2 norm of each example's gradient over *all* parameters together."""
    squares = [g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads.values()]
    return torch.stack(squares).sum(dim=0).sqrt()


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """[B]: the factor that scales each example's gradient to norm <= ``max_grad_norm``."""
    return (max_grad_norm / (norms + NORM_EPSILON)).clamp(max=1.0)


def add_clipped(
    total: dict[str, torch.Tensor], grads: Mapping[str, torch.Tensor], max_grad_norm: float
) -> torch.Tensor:
    """Add Σᵢ clip(gᵢ) of a batch of per-example gradients to ``total`` (in place);
    returns the examples' norms before clipping."""
    norms = per_example_norms(grads)
    factors = clip_factors(norms, max_grad_norm)
    for name, g in grads.items():
        total[name] += torch.einsum("b,b...->...", factors, g)
    return norms


def noisy_mean(
    total: Mapping[str, torch.Tensor],
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    expected_batch_size: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """(Σ clip(gᵢ) + N(0, (σ C)² I)) / expected batch size, per parameter."""
    std = noise_multiplier * max_grad_norm
    out = {}
    for name, summed in total.items():
        noise = torch.normal(0.0, std, size=summed.shape, generator=generator, device=summed.device)
        out[name] = (summed + noise) / expected_batch_size
    return out


def entropy_generator(device: torch.device) -> torch.Generator:
    """A torch generator seeded from OS entropy (see the module docstring)."""
    generator = torch.Generator(device=device)
    generator.seed()
    return generator
