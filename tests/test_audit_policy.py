"""The wire policy: the allow-list per message type, and a violation that names where
and why for everything else."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from silorec.audit.payload import Payload, PayloadInfo, WireArray, WireRecord, describe
from silorec.audit.policy import WireExpectations, check_reply
from silorec.wire import protocol

EXPECTED = WireExpectations(
    domain="alpha",
    weights={"w": ((2, 3), "float32"), "b": ((3,), "float32")},
    n_items=4,
    text_dim=2,
)


def arrays(name: str, **values: np.ndarray) -> WireRecord:
    return WireRecord(name, "array", arrays={k: WireArray.from_numpy(v) for k, v in values.items()})


def config(name: str, **entries: Any) -> WireRecord:
    return WireRecord(name, "config", entries=entries)


def metrics(name: str, **entries: Any) -> WireRecord:
    return WireRecord(name, "metric", entries=entries)


def info(*records: WireRecord) -> PayloadInfo:
    return describe(Payload(records))


def train_reply(*extra: WireRecord, **replace: WireRecord) -> PayloadInfo:
    records = {
        "info": config("info", domain="alpha"),
        "weights": arrays("weights", w=np.zeros((2, 3), np.float32), b=np.ones(3, np.float32)),
        "item_embeddings": arrays("item_embeddings", text=np.ones((4, 2), np.float32)),
        "metrics": metrics("metrics", epochs_run=2.0, final_train_loss=0.1),
    }
    records.update(replace)
    return info(*records.values(), *extra)


def violations(message_type: str, payload: PayloadInfo) -> list[str]:
    return [f"{v.rule}: {v}" for v in check_reply(message_type, payload, EXPECTED)]


def test_what_the_protocol_sends_is_allowed() -> None:
    assert violations(protocol.TRAIN, train_reply()) == []
    describe_reply = info(config("info", domain="alpha", unseen=False),
                          metrics("metrics", n_users=60.0, n_items=4.0))  # fmt: skip
    assert violations(protocol.DESCRIBE, describe_reply) == []
    evaluate_reply = info(config("info", domain="alpha"),
                          metrics("result:theta0", **{"test/recall@10": 0.2, "valid/n_users": 60.0}),
                          metrics("result:ties(density=0.2)", **{"test/mrr": 0.1}),
                          metrics("pairs", **{"test/ndcg@10/0/1/n": 60.0, "valid/ndcg@10/2/5/sumsq": 0.3}))  # fmt: skip
    assert violations(protocol.EVALUATE, evaluate_reply) == []


def test_a_missing_record_or_parameter_is_not_the_policys_business() -> None:
    partial = info(
        config("info", domain="alpha"), arrays("weights", w=np.zeros((2, 3), np.float32))
    )
    assert violations(protocol.TRAIN, partial) == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (train_reply(weights=arrays("weights", w=np.zeros((2, 3), np.float32), extra=np.zeros(2, np.float32))),
         ["allow-list: array 'weights/extra': is not a parameter of the model (float32 [2])"]),
        (train_reply(weights=arrays("weights", w=np.zeros((3, 2), np.float32))),
         ["shape: array 'weights/w': has shape [3, 2], expected [2, 3]"]),
        (train_reply(weights=arrays("weights", w=np.zeros((2, 3), np.float64))),
         ["type: array 'weights/w': is float64, expected float32"]),
        (train_reply(weights=arrays("weights", w=np.zeros((2, 3), np.int32))),
         ["type: array 'weights/w': is int32: integer, boolean and text arrays never leave a node"]),
        (train_reply(weights=arrays("weights", b=np.zeros(3, ">f4"))),
         ["type: array 'weights/b': is >f4, expected float32"]),
        (train_reply(item_embeddings=arrays("item_embeddings", text=np.ones((5, 2), np.float32))),
         ["shape: array 'item_embeddings/text': has shape [5, 2], expected [4, 2]"]),
        (train_reply(item_embeddings=arrays("item_embeddings", text=np.ones((4, 2), np.float32),
                                            ids=np.arange(4))),
         ["allow-list: array 'item_embeddings/ids': is not allowed (int64 [4])",
          "type: array 'item_embeddings/ids': is int64: integer, boolean and text arrays never leave a node"]),
        (train_reply(arrays("interactions", items=np.arange(6, dtype=np.int32))),
         ["allow-list: record 'interactions': (array: 'items' int32 [6]) is not allowed in a 'train' reply",
          "type: array 'interactions/items': is int32: integer, boolean and text arrays never leave a node"]),
        (train_reply(info=config("info", domain="alpha", history="u1: 3 5 7")),
         ["allow-list: config 'info' key 'history': is not allowed (str (9 bytes))"]),
        (train_reply(info=config("info", domain="beta")),
         ["value: config 'info' key 'domain': is not this node's domain 'alpha'"]),
        (train_reply(info=config("info", domain=b"alpha")),
         ["type: config 'info' key 'domain': is bytes (5 bytes), expected str"]),
        (train_reply(metrics=metrics("metrics", epochs_run=2)),
         ["type: metric 'metrics' key 'epochs_run': is int, only float scalars may leave"]),
        (train_reply(metrics=metrics("metrics", ids=[3.0, 5.0, 7.0])),
         ["type: metric 'metrics' key 'ids': is list[float] (3 values), only float scalars may leave",
          "allow-list: metric 'metrics' key 'ids': is not on the train metric allow-list"]),
        (train_reply(metrics=metrics("metrics", item_17=17.0)),
         ["allow-list: metric 'metrics' key 'item_17': is not on the train metric allow-list"]),
        (train_reply(weights=config("weights", w="0.1 0.2")),
         ["type: record 'weights': is a config record, expected kind 'array'"]),
    ],
    ids=["extra-parameter", "shape", "float64", "int-weights", "big-endian", "embedding-rows",
         "embedding-ids", "extra-record", "config-string", "other-domain", "bytes-domain",
         "int-metric", "list-metric", "unlisted-metric", "wrong-kind"],
)  # fmt: skip
def test_each_violation_names_where_and_why(payload: PayloadInfo, expected: list[str]) -> None:
    assert violations(protocol.TRAIN, payload) == expected


def test_describe_and_evaluate_replies_have_their_own_allow_lists() -> None:
    describe_reply = info(config("info", domain="alpha", unseen="no"))
    assert violations(protocol.DESCRIBE, describe_reply) == [
        "type: config 'info' key 'unseen': is str (2 bytes), expected bool"
    ]
    evaluate_reply = info(config("info", domain="alpha"),
                          metrics("result:theta0", **{"user0042": 0.5}),
                          metrics("pairs", **{"test/ndcg@10/0/1/max": 1.0}),
                          arrays("weights", w=np.zeros((2, 3), np.float32)))  # fmt: skip
    assert violations(protocol.EVALUATE, evaluate_reply) == [
        "allow-list: metric 'result:theta0' key 'user0042': is not of the form <split>/<metric>",
        "allow-list: metric 'pairs' key 'test/ndcg@10/0/1/max': is not of the form "
        "<split>/<metric>/<i>/<j>/<statistic>",
        "allow-list: record 'weights': (array: 'w' float32 [2, 3]) is not allowed in a "
        "'evaluate' reply",
    ]


def test_a_reply_to_an_unknown_message_type_may_hold_nothing() -> None:
    assert violations("query.secrets", info(metrics("metrics", x=1.0))) == [
        "allow-list: record 'metrics': (metric: 'x' float) is not allowed in a 'query.secrets' reply"
    ]


def test_an_opaque_array_is_refused() -> None:
    opaque = WireArray.opaque((2,), "int32", "custom", b"\x01\x00\x00\x00\x02\x00\x00\x00")
    payload = info(WireRecord("weights", "array", arrays={"w": opaque}))
    assert violations(protocol.TRAIN, payload) == [
        "type: array 'weights/w': is opaque 'custom' data, not a numpy array"
    ]


def test_ten_thousand_metric_keys_are_blocked_in_a_readable_verdict() -> None:
    """The scalar side door: one float item id per key."""
    many = metrics("metrics", **{f"m{i}": float(i) for i in range(10_000)})
    found = violations(protocol.TRAIN, train_reply(metrics=many))
    assert len(found) == 11
    assert found[-1] == (
        "allow-list: metric 'metrics': 9990 more keys that are not on the train metric "
        "allow-list"
    )


def test_evaluate_results_are_bounded_by_the_nodes_model_limit() -> None:
    records = [metrics(f"result:m{i}", **{"test/recall@10": 0.1}) for i in range(5)]
    payload = info(config("info", domain="alpha"), *records)
    expected = WireExpectations(domain="alpha", weights={}, metric_ks=(10,), max_models=4)
    found = [f"{v.rule}: {v.where}: {v.detail}"
             for v in check_reply(protocol.EVALUATE, payload, expected)]  # fmt: skip
    assert found == ["allow-list: records 'result:*': 5 model results, at most 4 may leave"]
    unknown = info(config("info", domain="alpha"), metrics("result:m", **{"test/recall@7": 0.1}))
    found = [v.detail for v in check_reply(protocol.EVALUATE, unknown, expected)]
    assert found == ["is not of the form <split>/<metric>"]
