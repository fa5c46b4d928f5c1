"""Conversions between silorec's plain values and Flower records."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from silorec.models import Weights


def weights_to_record(weights: Mapping[str, np.ndarray]) -> ArrayRecord:
    """Weights -> ArrayRecord, parameter names kept."""
    return ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in weights.items()})


def record_to_weights(record: ArrayRecord) -> Weights:
    """ArrayRecord -> weights (numpy float arrays, no pickle)."""
    return {name: array.numpy() for name, array in record.items()}


def metrics_record(values: Mapping[str, float]) -> MetricRecord:
    """Scalars -> MetricRecord (floats; NaN is kept and treated by the reader)."""
    return MetricRecord({key: float(value) for key, value in values.items()})


def payload_bytes(content: RecordDict) -> int:
    """Bytes of a message's payload: serialised arrays plus config/metric entries.

    What is counted is what a network would carry for the records' values; Flower's
    own framing adds a small constant per message.
    """
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += sum(len(array.data) for array in record.values())
        elif isinstance(record, ConfigRecord | MetricRecord):
            for key, value in record.items():
                total += len(key.encode()) + _value_bytes(value)
    return total


def _value_bytes(value: object) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return sum(_value_bytes(v) for v in value)
    return 8
