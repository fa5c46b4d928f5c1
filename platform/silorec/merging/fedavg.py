"""FedAvg's aggregation: the average of domain models weighted by their training-set
sizes. The sizes come from validated replies (no larger than the domain a node
described, see :func:`silorec.wire.replies.read_train`), so a node's claim alone
cannot steer θ0."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


def weighted_average(
    models: Mapping[str, Mapping[str, np.ndarray]], sizes: Mapping[str, float]
) -> dict[str, np.ndarray]:
    """Σ_d (n_d / Σ n) · W_d per parameter, as float32. Every size must be a finite
    positive number (a ValueError names the domain otherwise)."""
    if not models:
        raise ValueError("FedAvg needs at least one model")
    for domain in models:
        size = sizes.get(domain)
        if size is None or not math.isfinite(size) or size <= 0:
            raise ValueError(f"domain '{domain}': FedAvg size {size!r} is not a positive number")
    total = float(sum(sizes[d] for d in models))
    names = next(iter(models.values())).keys()
    return {
        name: sum(
            (sizes[d] / total) * w[name].astype(np.float64) for d, w in models.items()
        ).astype(np.float32)
        for name in names
    }
