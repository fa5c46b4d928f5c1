"""Progress on long work: a bar on a terminal, one log line per step elsewhere.

Under Flower the node's output is streamed line by line to the user (``flwr run
--stream``); redrawn bars turn into walls of text there, so non-interactive output
gets plain log lines instead.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from tqdm.auto import tqdm

from silorec.logs import get_logger

log = get_logger("silorec.progress")


class StepProgress:
    """Reports ``total`` steps of a named piece of work."""

    def __init__(self, total: int, label: str, *, enabled: bool, unit: str = "epoch") -> None:
        self.total, self.label, self.unit, self.enabled = total, label, unit, enabled
        self._bar = (
            tqdm(total=total, desc=label, unit=unit, leave=False)
            if enabled and sys.stderr.isatty()
            else None
        )

    def step(self, number: int, values: Mapping[str, float]) -> None:
        """Step ``number`` (1-based) is done; ``values`` are shown beside it."""
        shown = {k: round(v, 4) for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(shown)
            self._bar.update(1)
        elif self.enabled:
            details = ", ".join(f"{k} {v}" for k, v in shown.items())
            log.info("%s: %s %d/%d: %s", self.label, self.unit, number, self.total, details)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
