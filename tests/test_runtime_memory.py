"""The merge server's peak-memory reading: the high-water mark of the block alone."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from silorec.runtime import PeakMemory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_peak_memory_is_reset_for_each_block() -> None:
    with PeakMemory() as big:
        block = np.ones(40_000_000)  # 305 MiB
        block[::4096] = 2.0
    del block
    with PeakMemory() as small:
        np.ones(1000).sum()
    assert big.mib is not None and small.mib is not None
    assert big.mib - small.mib > 250, (big.mib, small.mib)
    assert big.added_mib > 250 and small.added_mib < 50, (big.added_mib, small.added_mib)
