"""The Gaussian mechanism on an uploaded task vector (output perturbation).

The node clips its task vector τ = θk − θ0 to L2 norm ``clip_norm`` and adds
N(0, σ² I) to every coordinate before uploading θ0 + τ̃. Sensitivity, stated
honestly: whatever training does, a single user can move the clipped τ anywhere in the
ball of radius C, so two data sets that differ in one user (replaced, added or removed)
give outputs at most the ball's diameter apart: Δ₂ = 2C. With σ = noise multiplier x Δ₂
one release is the Gaussian mechanism with that noise multiplier, accounted as one
step at sample rate 1.

The noise is drawn from a generator seeded from the operating system's entropy, never
from the scenario's seed: the merge server knows the scenario, and with the seed it
could regenerate the noise and subtract it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from silorec.privacy.accounting import GaussianSteps

#: Δ₂ / clip_norm: a clipped task vector lies in a ball of radius C, diameter 2C.
SENSITIVITY_PER_CLIP_NORM = 2.0


def l2_sensitivity(clip_norm: float) -> float:
    """L2 sensitivity of a task vector clipped to ``clip_norm`` (replace-one)."""
    return SENSITIVITY_PER_CLIP_NORM * clip_norm


def gaussian_release_steps(noise_multiplier: float) -> GaussianSteps:
    """One Gaussian-mechanism release, for the accountant."""
    return GaussianSteps(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=1)


def task_vector_norm(base: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]) -> float:
    """‖θ − θ0‖₂ over every parameter."""
    return math.sqrt(
        sum(float(np.sum((weights[n].astype(np.float64) - base[n]) ** 2)) for n in base)
    )


def gaussian_task_vector_release(
    base: Mapping[str, np.ndarray],
    weights: Mapping[str, np.ndarray],
    *,
    clip_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """θ0 + clip(θ − θ0, ``clip_norm``) + N(0, (noise_multiplier x 2 clip_norm)² I), float32.

    ``rng`` is for tests only: by default the noise comes from OS entropy.
    """
    rng = rng if rng is not None else np.random.default_rng()
    norm = task_vector_norm(base, weights)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    std = noise_multiplier * l2_sensitivity(clip_norm)
    released: dict[str, np.ndarray] = {}
    for name, start in base.items():
        start64 = start.astype(np.float64)
        step = scale * (weights[name].astype(np.float64) - start64)
        released[name] = (start64 + step + rng.normal(0.0, std, size=start.shape)).astype(
            np.float32
        )
    return released
