"""Hostile encodings of a user's history written into an *allowed* tensor (the item
embeddings: right name, shape and dtype), so that only the guard's content scan can
stop them. Each encoding is either blocked by the guard, or listed in
docs/threat-model.md as a known limit with its reason (a test keeps the two in step:
an encoding that starts being blocked, or an unlisted one that passes, fails here)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from factories import make_domain

from silorec.audit.payload import Payload, WireArray, WireRecord
from silorec.data.domain import ItemCatalogue
from silorec.models import model_weight_spec
from silorec.node.canaries import Canaries
from silorec.node.guard import DomainScanners, NodeGuard
from silorec.scenario import ModelSettings, Scenario
from silorec.wire import protocol

THREAT_MODEL = Path(__file__).resolve().parents[1] / "docs" / "threat-model.md"
N_USERS, N_ITEMS, LENGTH, TEXT_DIM = 50, 200, 8, 32
MODEL = ModelSettings(dim=8, layers=1, heads=2, max_len=6)
SCENARIO = Scenario.model_validate(
    {
        "name": "enc",
        "model": MODEL.model_dump(),
        "federation": {"min_domains": 1},
        "domains": [{"name": "toy", "data": {"kind": "synthetic"}}],
    }  # fmt: skip
)


def _domain():
    rng = np.random.default_rng(7)
    sequences = [rng.choice(N_ITEMS, size=LENGTH, replace=False).tolist() for _ in range(N_USERS)]
    domain = make_domain(sequences, n_items=N_ITEMS)
    return replace(domain, user_ids=[f"customer-{u:05d}" for u in range(N_USERS)],
                   items=ItemCatalogue(ids=[f"SKU-{i:06d}" for i in range(N_ITEMS)]))  # fmt: skip


DOMAIN = _domain()
HISTORIES = [DOMAIN.sequence(u) for u in range(10)]  # what the leak carries


def _ids(arrange: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.concatenate([arrange(np.asarray(h)) for h in HISTORIES])


def _bytes_of(values: np.ndarray, dtype: str) -> bytes:
    return values.astype(dtype).tobytes()


def _write_bytes(embeddings: np.ndarray, data: bytes) -> np.ndarray:
    """``data`` over the first bytes of ``embeddings`` (same shape and dtype)."""
    raw = bytearray(embeddings.tobytes())
    raw[: len(data)] = data
    return np.frombuffer(bytes(raw), dtype=np.float32).reshape(embeddings.shape).copy()


def _low_mantissa(embeddings: np.ndarray) -> np.ndarray:
    bits = embeddings.reshape(-1).view(np.uint32).copy()
    ids = _ids(lambda h: h).astype(np.uint32)
    bits[: len(ids)] = (bits[: len(ids)] & ~np.uint32(0xFF)) | ids  # ids < 256
    return bits.view(np.float32).reshape(embeddings.shape)


def _tiny_offsets(embeddings: np.ndarray) -> np.ndarray:
    out = embeddings.copy().reshape(-1)
    ids = _ids(lambda h: h)
    out[: len(ids)] += 1e-3 * ids
    return out.reshape(embeddings.shape)


def _byte_write(dtype: str, arrange: Callable[[np.ndarray], np.ndarray] = lambda h: h):
    return lambda e: _write_bytes(e, _bytes_of(_ids(arrange), dtype))


def _sorted_delta(h: np.ndarray) -> np.ndarray:
    s = np.unique(h)
    return np.concatenate([[s[0]], np.diff(s)])


def _even_odd(h: np.ndarray) -> np.ndarray:
    return np.concatenate([h[0::2], h[1::2]])


#: name -> how the leak is written into the embeddings.
ENCODINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float32": _byte_write("<f4"),
    "float16": _byte_write("<f2"),
    "int16": _byte_write("<i2"),
    "uint16 big-endian": _byte_write(">u2"),
    "int32 big-endian": _byte_write(">i4"),
    "+1 offset": _byte_write("<f4", lambda h: h + 1),
    "reversed order": _byte_write("<f4", lambda h: h[::-1]),
    "even/odd split": _byte_write("<f4", _even_odd),
    "sorted": _byte_write("<f4", np.unique),
    "int8 byte planes": _byte_write("<u1"),
    "sorted-delta": _byte_write("<f4", _sorted_delta),
    "XOR with a constant": _byte_write("<i4", lambda h: h ^ 0x5A5A),
    "low mantissa bits": _low_mantissa,
    "weight += 1e-3 * id": _tiny_offsets,
}


def known_limits() -> set[str]:
    """The encodings docs/threat-model.md lists as not seen by the content scan: the
    bullets of its 'Encodings the content scan does not see' section, ``- **name**``."""
    text = THREAT_MODEL.read_text()
    section = text[text.index("### Encodings the content scan does not see") :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    return set(re.findall(r"^- \*\*(.+?)\*\*", section, flags=re.MULTILINE))


def _guard() -> NodeGuard:
    scanners = DomainScanners.for_domain(DOMAIN, Canaries([], []), min_identifier_length=6)
    return NodeGuard.for_node(SCENARIO, DOMAIN, TEXT_DIM, scanners)


def _payload(embeddings: np.ndarray) -> Payload:
    rng = np.random.default_rng(0)
    spec = model_weight_spec(MODEL, TEXT_DIM)
    weights = {n: rng.normal(0, 0.05, s).astype(np.float32) for n, (s, _) in spec.items()}
    return Payload((
        WireRecord("info", "config", entries={"domain": "toy"}),
        WireRecord("weights", "array", arrays={k: WireArray.from_numpy(v) for k, v in weights.items()}),
        WireRecord(protocol.ITEM_EMBEDDINGS, "array",
                   arrays={protocol.ITEM_EMBEDDINGS_ARRAY: WireArray.from_numpy(embeddings)}),
        WireRecord("metrics", "metric", entries={"n_train_sequences": 50.0}),
    ))  # fmt: skip


def _embeddings() -> np.ndarray:
    return np.random.default_rng(3).normal(0, 0.1, (N_ITEMS, TEXT_DIM)).astype(np.float32)


def test_the_honest_payload_passes() -> None:
    verdict = _guard().inspect(protocol.TRAIN, _payload(_embeddings()))
    assert verdict.allowed, verdict.reason()


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_each_encoding_is_blocked_or_a_listed_known_limit(name: str) -> None:
    leaked = ENCODINGS[name](_embeddings())
    assert leaked.shape == (N_ITEMS, TEXT_DIM) and leaked.dtype == np.float32
    verdict = _guard().inspect(protocol.TRAIN, _payload(leaked))
    listed = name in known_limits()
    if listed:
        assert verdict.allowed, (
            f"'{name}' is now blocked ({verdict.reason()}): take it off the known limits "
            "in docs/threat-model.md"
        )
    else:
        assert not verdict.allowed, f"'{name}' passed the guard and is not a listed known limit"
        assert any(v.rule == "sequence" for v in verdict.violations)


def test_every_listed_limit_is_an_encoding_tested_here() -> None:
    assert known_limits() <= set(ENCODINGS), known_limits() - set(ENCODINGS)


# -- the scalar and name channels ---------------------------------------------------


def _with(*extra: WireRecord, metrics: dict | None = None) -> Payload:
    payload = _payload(_embeddings())
    records = [r for r in payload.records if r.name != "metrics" or metrics is None]
    if metrics is not None:
        records.append(WireRecord("metrics", "metric", entries=metrics))
    return Payload((*records, *extra))


def _evaluate(record_name: str) -> Payload:
    return Payload((
        WireRecord("info", "config", entries={"domain": "toy"}),
        WireRecord(record_name, "metric", entries={"test/recall@10": 0.5, "test/n_users": 50.0}),
    ))  # fmt: skip


def test_ten_thousand_metric_keys_of_one_item_id_each_are_blocked_quickly() -> None:
    ids = _ids(lambda h: h)
    many = {f"m{i}": float(ids[i % len(ids)]) for i in range(10_000)}
    verdict = _guard().inspect(protocol.TRAIN, _with(metrics=many))
    assert not verdict.allowed
    rules = {v.rule for v in verdict.violations}
    assert {"allow-list", "sequence"} <= rules
    assert any("scalar values, together" in v.where for v in verdict.violations)
    assert verdict.scan_seconds < 5.0, verdict.scan_seconds


def test_a_run_spread_over_allowed_metric_names_is_found() -> None:
    """One id per allowed key: no key is wrong, but the values together are a run."""
    a, b, c = (float(x) for x in HISTORIES[0][:3])
    spread = {"epochs_run": a, "best_epoch": b, "train_seconds": c, "n_train_sequences": 50.0}
    verdict = _guard().inspect(protocol.TRAIN, _with(metrics=spread))
    assert not verdict.allowed
    assert {v.rule for v in verdict.violations} == {"sequence"}


IDENTIFIER = "customer-00003"


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(IDENTIFIER.encode()).decode(),
        base64.urlsafe_b64encode(IDENTIFIER.encode()).decode().rstrip("="),
        base64.b32encode(IDENTIFIER.encode()).decode(),
        IDENTIFIER.encode().hex(),
        "\0".join(IDENTIFIER) + "\0",  # UTF-16 little-endian read as text
    ],
    ids=["base64", "base64url", "base32", "hex", "utf-16"],
)
def test_an_encoded_identifier_in_an_evaluate_record_name_is_found(encoded: str) -> None:
    verdict = _guard().inspect(protocol.EVALUATE, _evaluate(f"result:{encoded}"))
    assert not verdict.allowed
    assert any(v.rule == "identifier" and "record name" in v.where for v in verdict.violations)


@pytest.mark.parametrize("encode", [base64.b64encode, base64.b32encode, bytes.hex],
                         ids=["base64", "base32", "hex"])  # fmt: skip
def test_encoded_item_ids_in_a_record_name_are_found(encode) -> None:  # noqa: ANN001
    raw = _ids(lambda h: h)[:6].astype("<i4").tobytes()
    text = encode(raw)
    name = text if isinstance(text, str) else text.decode()
    verdict = _guard().inspect(protocol.EVALUATE, _evaluate(f"result:{name}"))
    assert any(v.rule == "sequence" for v in verdict.violations), verdict.reason()


def test_an_honest_evaluate_reply_passes() -> None:
    assert _guard().inspect(protocol.EVALUATE, _evaluate("result:mergerec(lambda=0.3)")).allowed


def _pairs_reply(values: list[float]) -> Payload:
    keys = [f"test/recall@10/{i}/{j}/{stat}" for i in range(20) for j in range(i + 1, 20)
            for stat in ("n", "sum", "sumsq")]  # fmt: skip
    entries = dict(zip(keys, values, strict=False))
    return Payload((
        WireRecord("info", "config", entries={"domain": "toy"}),
        WireRecord("result:m", "metric", entries={"test/recall@10": 0.5, "test/n_users": 50.0}),
        WireRecord("pairs", "metric", entries=entries),
    ))  # fmt: skip


def test_one_chance_run_among_many_paired_sums_does_not_block_an_honest_reply() -> None:
    """Measured on amazon: paired sums are small integers, and among thousands of them
    a run of three of some user's ids turned up by chance and blocked an honest
    evaluate reply. One run among many values is not evidence; several are."""
    rng = np.random.default_rng(0)
    values = rng.integers(-40, 40, size=570).astype(float).tolist()
    values[100:103] = [float(x) for x in HISTORIES[0][:3]]  # the chance run
    assert _guard().inspect(protocol.EVALUATE, _pairs_reply(values)).allowed
    leak = [float(x) for x in np.concatenate(HISTORIES)][:60]
    values[200 : 200 + len(leak)] = leak
    verdict = _guard().inspect(protocol.EVALUATE, _pairs_reply(values))
    assert not verdict.allowed and {v.rule for v in verdict.violations} == {"sequence"}
