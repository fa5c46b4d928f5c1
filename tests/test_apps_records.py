"""Weights and metrics <-> Flower records, and the payload size of a message."""

from __future__ import annotations

import io
import math

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from silorec.apps.records import metrics_record, payload_bytes, record_to_weights, weights_to_record
from silorec.models import build_model, get_weights
from silorec.scenario import ModelSettings


def npy_size(array: np.ndarray) -> int:
    """Bytes of the array in .npy format, which is how a numpy Array is serialised."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return len(buffer.getvalue())


def test_model_weights_round_trip_exactly() -> None:
    weights = get_weights(build_model(ModelSettings(dim=16, layers=1), 24, seed=0))
    record = weights_to_record(weights)
    assert isinstance(record, ArrayRecord)
    back = record_to_weights(record)
    assert list(back) == list(weights)  # names and order
    for name, array in weights.items():
        assert back[name].dtype == np.float32
        assert back[name].shape == array.shape
        np.testing.assert_array_equal(back[name], array)


def test_round_trip_keeps_other_dtypes_and_non_contiguous_arrays() -> None:
    base = np.arange(12, dtype=np.float64).reshape(3, 4)
    weights = {
        "transposed": base.T,  # not C-contiguous
        "every_other": base[:, ::2],
        "counts": np.array([1, -2, 3], dtype=np.int64),
        "tiny": np.array([1e-38, -0.0, np.inf], dtype=np.float32),
    }
    back = record_to_weights(weights_to_record(weights))
    assert list(back) == list(weights)
    for name, array in weights.items():
        assert back[name].dtype == array.dtype, name
        np.testing.assert_array_equal(back[name], array)
    assert np.signbit(back["tiny"][1])  # bit-exact, even -0.0


def test_empty_weights() -> None:
    assert record_to_weights(weights_to_record({})) == {}


def test_metrics_record_holds_floats_and_keeps_nan() -> None:
    record = metrics_record({"recall@10": 0.25, "n_users": 7, "loss": float("nan")})
    assert isinstance(record, MetricRecord)
    assert record["recall@10"] == 0.25
    assert record["n_users"] == 7.0 and isinstance(record["n_users"], float)
    assert math.isnan(record["loss"])


def test_payload_bytes_by_hand() -> None:
    array = np.zeros(3, dtype=np.float32)
    content = RecordDict(
        {
            "weights": ArrayRecord({"x": Array(array)}),
            "config": ConfigRecord(
                {"a": 1, "b": "héllo", "c": b"xyz", "d": [1, 2], "e": True, "f": ["ab", "c"]}
            ),
            "metrics": MetricRecord({"loss": 0.5, "n": 3}),
        }
    )
    arrays = npy_size(array)  # 128-byte .npy header + 3 * 4 bytes
    assert arrays == 140
    config = (
        (1 + 8)  # "a": a number is 8 bytes
        + (1 + 6)  # "b": "héllo" is 6 bytes in UTF-8
        + (1 + 3)  # "c": raw bytes
        + (1 + 2 * 8)  # "d": a list of two numbers
        + (1 + 8)  # "e": a bool counts as a number
        + (1 + 2 + 1)  # "f": a list of strings
    )
    metrics = (4 + 8) + (1 + 8)
    assert payload_bytes(content) == arrays + config + metrics == 211


def test_payload_bytes_counts_every_array() -> None:
    weights = {"a": np.ones((4, 5), np.float32), "b": np.ones(7, np.float32)}
    content = RecordDict({"weights": weights_to_record(weights)})
    expected = sum(npy_size(a) for a in weights.values())
    assert payload_bytes(content) == expected
    assert expected > 4 * (20 + 7)  # the serialised size, headers included
    assert payload_bytes(RecordDict({})) == 0
