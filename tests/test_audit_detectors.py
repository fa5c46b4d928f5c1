"""Leakage detectors: item-id runs in every encoding, byte order and offset; raw
identifiers; canaries; and the node's guard putting them together with the policy."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from factories import make_domain

from silorec.audit.payload import Payload, WireArray, WireRecord
from silorec.data.domain import ItemCatalogue
from silorec.models import model_weight_spec
from silorec.node.canaries import CANARY_LENGTH, Canaries, make_canaries, plant_canaries
from silorec.node.guard import DomainScanners, NodeGuard
from silorec.node.leakage import ENCODINGS, IdentifierScanner, SequenceScanner
from silorec.scenario import ModelSettings, Scenario
from silorec.wire import protocol

# Two users over 10 items: runs (5, 9, 2), (9, 2, 7) and (1, 3, 8).
USERS = [np.array([5, 9, 2, 7]), np.array([1, 3, 8])]


def scanner(n_items: int = 10) -> SequenceScanner:
    return SequenceScanner(n_items, {"user": USERS})


def hits(buffer: bytes, n_items: int = 10) -> set[tuple[str, str, int, int]]:
    found = scanner(n_items).scan(np.frombuffer(buffer, np.uint8))
    return {(h.group, h.encoding, h.offset, h.runs) for h in found}


@pytest.mark.parametrize(("dtype", "encoding"), ENCODINGS, ids=[e for _, e in ENCODINGS])
@pytest.mark.parametrize("prefix", [0, 1, 3, 5, 7])
def test_a_users_items_are_found_in_every_encoding_at_any_offset(
    dtype: str, encoding: str, prefix: int
) -> None:
    rng = np.random.default_rng(prefix)
    junk = rng.normal(size=8).astype(np.float32).tobytes()
    data = junk[:prefix] + np.array([5, 9, 2, 7], dtype=dtype).tobytes() + junk
    # 16-bit readings are searched where runs are rare among all possible ones (not
    # in a 10-item catalogue, see the next test): the same users over 1,000 items.
    n_items = 1000 if np.dtype(dtype).itemsize == 2 else 10
    assert ("user", encoding, prefix, 2) in hits(data, n_items)


def test_16_bit_readings_are_skipped_in_a_tiny_catalogue() -> None:
    assert not scanner(10).scans_16_bit and scanner(1000).scans_16_bit
    data = np.array([5, 9, 2, 7], dtype="<u2").tobytes()
    assert {e for _, e, _, _ in hits(data, 10)} == set()


def test_items_that_are_not_a_run_of_one_user_are_not_found() -> None:
    for items in ([5, 2, 9], [2, 7, 1], [7, 1, 3], [3, 8, 5]):  # reordered, or across users
        assert hits(np.array(items, dtype="<i4").tobytes()) == set(), items


def test_runs_that_repeat_an_item_are_not_searched() -> None:
    repeated = SequenceScanner(10, {"user": [np.array([0, 0, 1, 2])]})
    assert repeated.scan(np.array([0, 0, 1], dtype="<i4").view(np.uint8)) == []
    found = repeated.scan(np.array([0, 1, 2], dtype="<i4").view(np.uint8))
    assert [(h.encoding, h.runs) for h in found] == [("int32 little-endian", 1)]


def test_sparse_float_embeddings_of_a_small_catalogue_hold_no_runs() -> None:
    """Zero floats followed by others read as small integers at shifted offsets
    ((0, 0, x) and the like): the runs a repeated item would give."""
    rng = np.random.default_rng(0)
    users = [rng.integers(0, 40, size=8) for _ in range(200)]
    users += [np.array([0, 0, item]) for item in range(1, 40)]  # item 0 bought twice, then ...
    embeddings = rng.normal(size=(40, 64)).astype(np.float32)
    embeddings[rng.random(embeddings.shape) < 0.9] = 0.0
    assert SequenceScanner(40, {"user": users}).scan(embeddings.view(np.uint8).reshape(-1)) == []


def test_ordinary_float_weights_hold_no_runs() -> None:
    rng = np.random.default_rng(0)
    users = [rng.integers(0, 2000, size=10) for _ in range(6000)]
    weights = np.concatenate([rng.normal(0, 0.05, 200_000), np.zeros(64), np.ones(64)])
    found = SequenceScanner(2000, {"user": users}).scan(weights.astype(np.float32).view(np.uint8))
    assert found == []


IDS = {"user": ["user000042", "userÄ-77-x"], "item": ["B00004TMFE", "B00004TMFEXL"]}


def test_identifiers_are_found_at_any_offset_longest_first() -> None:
    identifiers = IdentifierScanner(IDS, min_length=6)
    data = b"\x00\x07junk user000042 and B00004TMFEXL, " + "userÄ-77-x".encode() + b"\xff"
    assert identifiers.find(data) == [(7, 17, "user"), (22, 34, "item"), (36, 47, "user")]
    assert [(h.kind, h.count) for h in identifiers.scan(data)] == [("item", 1), ("user", 2)]


def test_identifiers_shorter_than_the_minimum_are_not_searched() -> None:
    identifiers = IdentifierScanner({"user": ["u1", "u12345"]}, min_length=6)
    assert identifiers.find(b"u1 u1 u12345") == [(6, 12, "user")]


def test_redaction_replaces_every_identifier_in_a_reason() -> None:
    identifiers = IdentifierScanner(IDS, min_length=6)
    text, count = identifiers.redact("KeyError: 'user000042' has no item B00004TMFE")
    assert (text, count) == ("KeyError: '<redacted>' has no item <redacted>", 2)
    assert identifiers.redact("nothing to hide") == ("nothing to hide", 0)


def test_canaries_are_reproducible_per_domain_and_train_only() -> None:
    first = make_canaries("alpha", 40, 3, seed=0)
    again = make_canaries("alpha", 40, 3, seed=0)
    assert again.user_ids == first.user_ids
    assert all(np.array_equal(a, b) for a, b in zip(again.sequences, first.sequences, strict=True))
    assert first.user_ids != make_canaries("beta", 40, 3, seed=0).user_ids
    assert all(u.startswith("canary-") and len(u) == len("canary-") + 32 for u in first.user_ids)
    assert all(len(s) == CANARY_LENGTH and s.max() < 40 for s in first.sequences)
    domain = make_domain([[1, 2, 3, 4], [2, 3, 4, 5]], n_items=40)
    planted = plant_canaries(domain, first)
    assert planted.user_ids[2:] == first.user_ids
    assert np.array_equal(planted.sequence(3), first.sequences[1])
    assert list(planted.evaluable_users()) == list(domain.evaluable_users())


def test_canary_items_and_identifiers_are_reported_as_canaries() -> None:
    domain = make_domain([[1, 2, 3, 4], [2, 3, 4, 5]], n_items=40)
    canaries = make_canaries("toy", 40, 2, seed=0)
    scanners = DomainScanners.for_domain(plant_canaries(domain, canaries), canaries, 6)
    leak = canaries.sequences[0].astype("<i8").tobytes() + canaries.user_ids[1].encode()
    assert {v.rule for v in scanners.scan("x", leak)} == {"canary"}
    assert [v.rule for v in scanners.scan("x", np.array([1, 2, 3], "<i4").tobytes())] == [
        "sequence"
    ]


# -- the node's guard ---------------------------------------------------------------

MODEL = ModelSettings(dim=8, layers=1, heads=2, max_len=5)
SCENARIO = Scenario.model_validate({
    "name": "t", "model": MODEL.model_dump(), "federation": {"min_domains": 1},
    "domains": [{"name": "toy", "data": {"kind": "synthetic"}}],
})  # fmt: skip


def guard() -> NodeGuard:
    """A node of 2 users over 12 items, identifiers long enough to search."""
    domain = make_domain([[1, 2, 3, 4, 5], [6, 7, 8, 9, 1]], n_items=12)
    domain = replace(domain, user_ids=["customer-0000", "customer-0001"],
                     items=ItemCatalogue(ids=[f"SKU-{i:05d}" for i in range(12)]))  # fmt: skip
    scanners = DomainScanners.for_domain(domain, Canaries([], []), min_identifier_length=6)
    return NodeGuard.for_node(SCENARIO, domain, 4, scanners)


def train_payload(*extra: WireRecord, info: dict | None = None) -> Payload:
    spec = model_weight_spec(MODEL, 4)
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(size=shape).astype(np.float32) for name, (shape, _) in spec.items()}
    return Payload((
        WireRecord("info", "config", entries=info or {"domain": "toy"}),
        WireRecord("weights", "array", arrays={k: WireArray.from_numpy(v) for k, v in weights.items()}),
        WireRecord("item_embeddings", "array",
                   arrays={"text": WireArray.from_numpy(rng.normal(size=(12, 4)).astype(np.float32))}),
        WireRecord("metrics", "metric", entries={"epochs_run": 2.0}),
        *extra,
    ))  # fmt: skip


def test_the_guard_lets_an_honest_reply_through() -> None:
    verdict = guard().inspect(protocol.TRAIN, train_payload())
    assert verdict.allowed and verdict.blocked is None and verdict.scan_seconds > 0


def test_the_guard_blocks_a_hidden_run_and_an_identifier_key_redacted() -> None:
    hidden = WireRecord("metrics", "metric", entries={"customer-0000": 1.0})
    payload = train_payload(info={"domain": "toy", "note": "customer-0001 likes SKU-00006"})
    payload = Payload(payload.records[:3] + (hidden,))
    verdict = guard().inspect(protocol.TRAIN, payload)
    reasons = [str(v) for v in verdict.violations]
    assert "config 'info' key 'note': is not allowed (str (29 bytes))" in reasons
    assert "config 'info' key 'note': 1 raw item identifier(s)" in reasons
    assert "config 'info' key 'note': 1 raw user identifier(s)" in reasons
    assert "metric 'metrics' key '<redacted>' (name): 1 raw user identifier(s)" in reasons
    assert "customer" not in verdict.reason()
    assert verdict.blocked is not None
    assert verdict.blocked.record("info").entries["note"] == {"withheld": "str", "size": 29}
    assert verdict.blocked.record("metrics").entries == {
        "<redacted>": {"withheld": "float", "size": 3}
    }


def test_the_guard_finds_float_ids_written_over_allowed_embeddings() -> None:
    payload = train_payload()
    embeddings = np.random.default_rng(1).normal(size=(12, 4)).astype(np.float32)
    embeddings.reshape(-1)[5:10] = [6, 7, 8, 9, 1]
    records = list(payload.records)
    records[2] = WireRecord(
        "item_embeddings", "array", arrays={"text": WireArray.from_numpy(embeddings)}
    )
    verdict = guard().inspect(protocol.TRAIN, Payload(tuple(records)))
    # Found as stored (and, for these consecutive ids, read as ids + 1 too).
    assert {(v.rule, v.where) for v in verdict.violations} == {
        ("sequence", "array 'item_embeddings/text'")
    }
    assert (
        "3 run(s) of 3 consecutive item ids of user sequences as float32 little-endian (first at byte 20)"
        in verdict.reason()
    )


def test_scanning_an_amazon_sized_payload_takes_well_under_a_second() -> None:
    """6,000 users and 2,000 items, the default model and 384-dimensional text
    embeddings: 3.6 MB to scan (timed; the bound leaves room for a busy machine)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 20, size=6000)
    sequences = [rng.integers(0, 2000, size=n).tolist() for n in lengths]
    domain = make_domain(sequences, n_items=2000)
    canaries = make_canaries("toy", 2000, 10, seed=0)
    scanners = DomainScanners.for_domain(plant_canaries(domain, canaries), canaries, 6)
    spec = model_weight_spec(ModelSettings(), 384)
    arrays = {
        n: WireArray.from_numpy(rng.normal(0, 0.05, s).astype(np.float32))
        for n, (s, _) in spec.items()
    }
    arrays["text"] = WireArray.from_numpy(rng.normal(size=(2000, 384)).astype(np.float32))
    payload = Payload((WireRecord("weights", "array", arrays=arrays),))
    started = time.perf_counter()
    assert scanners.scan_payload(payload) == []
    seconds = time.perf_counter() - started
    print(f"scan of {sum(a.buffer.nbytes for a in arrays.values()) / 1e6:.1f} MB: {seconds:.3f} s")
    assert seconds < 2.0
