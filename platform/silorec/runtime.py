"""Where computation runs: device choice and CPU thread count."""

from __future__ import annotations

import torch


def resolve_device(requested: str) -> torch.device:
    """``'auto'`` picks the GPU when one is present, else the CPU; ``'cuda'`` without a
    GPU is an error rather than a silent fall-back."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA GPU is available")
    return device


def set_threads(threads: int | None) -> None:
    """Limit torch's CPU threads (a node sharing a machine should not take all cores)."""
    if threads is not None:
        torch.set_num_threads(threads)
