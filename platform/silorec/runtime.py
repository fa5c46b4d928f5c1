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


def use_deterministic_algorithms() -> None:
    """Same inputs, same seed, same machine: the same bits. Some of torch's CPU kernels
    (e.g. the scatter-add in an embedding's backward pass) otherwise accumulate in
    thread order, so two runs of one scenario and seed differed in the 4th decimal of
    a merge's Recall@10 (measured on quickstart). Set once per process, before
    training or merging; on a GPU, CUDA also needs ``CUBLAS_WORKSPACE_CONFIG``, which
    is set here when absent. ``warn_only``: an operation with no deterministic
    implementation warns instead of failing the run."""
    import os

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


class PeakMemory:
    """The process's peak resident memory while a block runs, in MiB (Linux).

    The kernel's high-water mark (``VmHWM``) is reset on entry (``clear_refs`` 5) and
    read on exit, so :attr:`mib` is the highest resident size reached inside the
    block, the memory held before it included (:attr:`added_mib`: above the resident
    size at entry). Elsewhere, or where the reset is not
    allowed, :attr:`mib` is ``None``; on a GPU, :attr:`gpu_mib` is torch's peak
    allocation on the current device.
    """

    def __init__(self) -> None:
        self.mib: float | None = None
        self.before_mib: float | None = None
        self.gpu_mib: float | None = None
        self._reset = False

    def __enter__(self) -> PeakMemory:
        self.before_mib = _status_mib("VmRSS:")
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
            self._reset = True
        except OSError:
            self._reset = False
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._reset:
            self.mib = _status_mib("VmHWM:")
        if torch.cuda.is_available():
            self.gpu_mib = torch.cuda.max_memory_allocated() / 2**20

    @property
    def added_mib(self) -> float | None:
        """How far the peak rose above the resident size at entry."""
        if self.mib is None or self.before_mib is None:
            return None
        return max(0.0, self.mib - self.before_mib)


def _status_mib(field: str) -> float | None:
    """A ``/proc/self/status`` size field (``VmHWM:``, ``VmRSS:``) in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None
