"""Progress messages: one ``silorec`` logger that prints to stderr.

Flower streams a ServerApp's and ClientApp's output to the user (``flwr run
--stream``), so plain log lines are the progress report in every engine.
"""

from __future__ import annotations

import logging
import sys

_FORMAT = "silorec | %(levelname)s | %(message)s"


def get_logger(name: str = "silorec") -> logging.Logger:
    """A logger under ``silorec`` that prints INFO and above to stderr (set up once)."""
    root = logging.getLogger("silorec")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(name)
