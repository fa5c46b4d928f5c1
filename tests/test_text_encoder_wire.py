"""What a text-encoder node may send: its catalogue's item texts, only where a learned
merge needs them on the server, and only its own; and what the scenario refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories import make_domain
from pydantic import ValidationError

from silorec.audit.payload import Payload, WireArray, WireRecord, describe
from silorec.audit.policy import WireExpectations, check_reply
from silorec.models import build_model, get_weights
from silorec.node.canaries import Canaries
from silorec.node.guard import DomainScanners, NodeGuard
from silorec.scenario import Scenario, load_scenario
from silorec.wire import protocol

TINY_ENCODER = Path(__file__).parent / "scenarios" / "tiny_encoder.toml"
TEXTS = ("Item 0", "Item 1", "Item 2", "Item 3")
EXPECTED = WireExpectations(
    domain="alpha",
    weights={"w": ((2,), "float32")},
    n_items=4,
    text_dim=2,
    item_texts_allowed=True,
    catalogue_texts=TEXTS,
)


def texts_record(**entries: object) -> WireRecord:
    return WireRecord(protocol.ITEM_TEXTS, "config", entries=entries)


def train_reply(*extra: WireRecord, weights: dict[str, np.ndarray] | None = None) -> Payload:
    weights = weights if weights is not None else {"w": np.zeros(2, np.float32)}
    records = (
        WireRecord(protocol.INFO, "config", entries={"domain": "alpha"}),
        WireRecord(protocol.WEIGHTS, "array",
                   arrays={n: WireArray.from_numpy(a) for n, a in weights.items()}),
        WireRecord(protocol.ITEM_EMBEDDINGS, "array",
                   arrays={"text": WireArray.from_numpy(np.ones((4, 2), np.float32))}),
        WireRecord(protocol.METRICS, "metric", entries={"epochs_run": 1.0}),
    )  # fmt: skip
    return Payload((*records, *extra))


def violations(payload: Payload, expected: WireExpectations = EXPECTED) -> list[str]:
    return [f"{v.rule}: {v}" for v in check_reply(protocol.TRAIN, describe(payload), expected)]


def test_the_honest_item_texts_are_allowed() -> None:
    assert violations(train_reply(texts_record(texts=list(TEXTS)))) == []
    # Replayed from the logs, the texts are unknown: count and types are still checked.
    replay = WireExpectations("alpha", EXPECTED.weights, 4, 2, item_texts_allowed=True)
    assert violations(train_reply(texts_record(texts=["a", "b", "c", "d"])), replay) == []


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (texts_record(texts=["Item 0", "Item 1", "Item 2", "user u7: 3 5 9"]),
         "value: config 'item_texts' key 'texts': 1 of 4 texts are not this node's catalogue texts"),
        (texts_record(texts=list(TEXTS[:3])),
         "shape: config 'item_texts' key 'texts': has 3 texts, expected one per item (4)"),
        (texts_record(texts=[*TEXTS, "Item 4"]),
         "shape: config 'item_texts' key 'texts': has 5 texts, expected one per item (4)"),
        (texts_record(texts=["Item 0", "Item 1", "Item 2", 3]),
         "type: config 'item_texts' key 'texts': is list[int|str] (4 values), expected list[str]"),
        (texts_record(texts=list(TEXTS), users=["u1", "u2"]),
         "allow-list: config 'item_texts' key 'users': is not allowed (list[str] (2 values))"),
    ],
)  # fmt: skip
def test_anything_else_in_the_item_texts_is_blocked(record: WireRecord, expected: str) -> None:
    assert violations(train_reply(record)) == [expected]


def test_item_texts_are_blocked_where_the_scenario_does_not_need_them() -> None:
    closed = WireExpectations("alpha", EXPECTED.weights, 4, 2)
    found = violations(train_reply(texts_record(texts=list(TEXTS))), closed)
    assert found == [
        "allow-list: record 'item_texts': item texts may only leave a node of a "
        "'text-encoder' scenario with a learned merge"
    ]


def test_the_nodes_guard_knows_its_catalogue_texts() -> None:
    scenario = load_scenario(TINY_ENCODER)
    domain = make_domain([[0, 1, 2, 3], [3, 2, 1, 0, 2]], name="alpha")
    guard = NodeGuard.for_node(
        scenario, domain, 2, DomainScanners.for_domain(domain, Canaries([], []), 6)
    )
    assert guard.expectations.item_texts_allowed
    assert guard.expectations.catalogue_texts == tuple(domain.items.texts(scenario.text.fields))
    weights = get_weights(build_model(scenario.model, 2, seed=0))
    own = texts_record(texts=domain.items.texts(scenario.text.fields))
    assert guard.inspect(protocol.TRAIN, train_reply(own, weights=weights)).allowed
    swapped = texts_record(texts=["Item 1", "Item 0", "Item 2", "Item 3"])
    verdict = guard.inspect(protocol.TRAIN, train_reply(swapped, weights=weights))
    assert not verdict.allowed
    assert [v.rule for v in verdict.violations] == ["value"]


def test_the_scenario_says_when_item_texts_are_uploaded() -> None:
    scenario = load_scenario(TINY_ENCODER)
    assert scenario.uploads_item_texts
    training_free = [m for m in scenario.merges if m.method in ("average", "ties")]
    assert not scenario.model_copy(update={"merges": training_free}).uploads_item_texts
    text_seq = scenario.model_copy(update={"model": scenario.model.model_copy(
        update={"kind": "text-seq"})})  # fmt: skip
    assert not text_seq.uploads_item_texts


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("privacy", {"mechanism": "dp-sgd", "noise_multiplier": 1.0},
         "privacy.mechanism 'dp-sgd' is not supported with model.kind 'text-encoder'"),
        ("privacy", {"membership_inference": True},
         "privacy.membership_inference is not supported with model.kind 'text-encoder'"),
        ("baselines", {"joint": True}, "baselines.joint is not supported"),
    ],
)  # fmt: skip
def test_what_the_encoder_does_not_support_is_refused(section: str, values: dict,
                                                       message: str) -> None:  # fmt: skip
    settings = load_scenario(TINY_ENCODER).model_dump(mode="json", by_alias=True)
    settings[section].update(values)
    with pytest.raises(ValidationError, match=message):
        Scenario.model_validate(settings)
    # The same settings are fine for text-seq (the Joint oracle reads saved models).
    settings["model"] = {"kind": "text-seq"}
    settings["output"]["save_models"] = True
    Scenario.model_validate(settings)
