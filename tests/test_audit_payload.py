"""Payload descriptions: what the audit logs hold instead of the data, and the Flower
glue that makes them from messages."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from silorec.apps.payload import log_entry, payload_of
from silorec.audit.payload import PayloadInfo, WireArray, describe


def content() -> RecordDict:
    return RecordDict(
        {
            "info": ConfigRecord({"domain": "alpha", "blob": b"\x00\x01\x02"}),
            "weights": ArrayRecord({"w": Array(np.arange(6, dtype=np.float32).reshape(2, 3))}),
            "metrics": MetricRecord({"loss": 0.5, "epochs": 3.0}),
        }
    )


def test_arrays_are_described_by_shape_dtype_bytes_and_hash_of_their_values() -> None:
    info = describe(payload_of(content()))
    (array,) = info.record("weights").arrays
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert (array.name, array.shape, array.dtype, array.nbytes) == ("w", (2, 3), "float32", 24)
    # Anyone can recompute the hash from the values, whatever Flower's framing.
    assert array.sha256 == hashlib.sha256(values.tobytes()).hexdigest()


def test_config_and_metric_entries_keep_keys_and_values_but_bytes_only_by_hash() -> None:
    info = describe(payload_of(content()))
    assert [r.name for r in info.records] == ["info", "weights", "metrics"]
    assert [r.kind for r in info.records] == ["config", "array", "metric"]
    assert info.record("metrics").entries == {"loss": 0.5, "epochs": 3.0}
    assert info.record("info").entries == {
        "domain": "alpha",
        "blob": {"bytes": 3, "sha256": hashlib.sha256(b"\x00\x01\x02").hexdigest()},
    }
    # Bytes: 24 (array) + "domain"+"alpha" (11) + "blob"+3 (7) + "loss"+8 + "epochs"+8 (26).
    assert info.nbytes == 24 + 11 + 7 + 26


def test_the_json_form_round_trips_and_the_digest_follows_the_content() -> None:
    info = describe(payload_of(content()))
    again = PayloadInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info and again.digest == info.digest
    changed = content()
    changed["metrics"]["loss"] = 0.25
    assert describe(payload_of(changed)).digest != info.digest


def test_withheld_values_keep_only_type_and_size_and_names_can_be_redacted() -> None:
    payload = payload_of(
        RecordDict({"info": ConfigRecord({"user42-history": "user42 bought 3 5 7", "n": [1, 2]})})
    )
    info = describe(payload, withhold_values=True, redact=lambda t: t.replace("user42", "<x>"))
    assert info.record("info").entries == {
        "<x>-history": {"withheld": "str", "size": 19},
        "n": {"withheld": "list[int]", "length": 2},
    }
    assert "bought" not in json.dumps(info.to_json())


def test_a_big_endian_array_is_not_described_as_an_ordinary_float32() -> None:
    wire = WireArray.from_numpy(np.ones(3, dtype=">f4"))
    assert wire.dtype == ">f4" and wire.buffer.nbytes == 12


def test_an_array_that_is_not_numpy_is_described_and_kept_as_raw_bytes() -> None:
    opaque = Array(
        dtype="int32", shape=(2,), stype="custom", data=b"\x01\x00\x00\x00\x02\x00\x00\x00"
    )
    payload = payload_of(RecordDict({"x": ArrayRecord({"a": opaque})}))
    (record,) = payload.records
    assert (
        record.arrays["a"].stype == "custom" and record.arrays["a"].buffer.tobytes()[:1] == b"\x01"
    )
    (array,) = describe(payload).record("x").arrays
    assert array.to_json()["stype"] == "custom" and array.nbytes == 8


@pytest.fixture
def server_task() -> Iterator[None]:
    """Flower stamps new messages with the task identity a SuperLink gives a process."""
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 5, 0, 1
    yield
    TaskIdentity.run_id = TaskIdentity.node_id = TaskIdentity.task_id = None


def test_log_entries_of_replies_carry_the_instruction_id_and_errors_no_payload(
    server_task: None,
) -> None:
    instruction = Message(RecordDict(), dst_node_id=7, message_type="train", group_id="g")
    instruction.metadata.__dict__["_message_id"] = "m-1"
    reply = Message(content(), reply_to=instruction)
    entry = log_entry(reply, "reply", node_id=7, domain="alpha")
    assert (entry.reply_to_message_id, entry.message_type, entry.group_id) == ("m-1", "train", "g")
    assert (entry.run_id, entry.node_id, entry.domain) == (5, 7, "alpha")
    assert entry.payload == describe(payload_of(content()))
    failed = log_entry(
        Message(Error(code=2, reason="boom"), reply_to=instruction), "reply", node_id=7
    )
    assert failed.error is not None and (failed.error.code, failed.error.reason) == (2, "boom")
    assert failed.payload.records == ()
