"""The node's guard: the wire policy plus the leakage detectors, applied to every
reply before it may leave (node side: it knows the domain's data).

- the wire policy (:mod:`silorec.audit.policy`) with this node's expectations: its
  domain, the model's parameters, its catalogue size and text dimension (and, where
  the scenario uploads item texts, the catalogue's own texts, the only ones that may
  leave); its type
  rules are detector (a): no integer or boolean arrays, no strings or bytes beyond
  the allow-list;
- detector (b), a byte scan of every array, string, bytes value, key and name for
  runs of local users' item ids and for raw user and item identifiers;
- detector (c), canary users planted in the training data, searched the same way.

A reply with any violation is blocked by the caller (:mod:`silorec.apps.mods`).
Everything here is free of Flower, so a deployment can preview a reply with it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from silorec.audit.payload import Payload, PayloadInfo, describe
from silorec.audit.policy import WireExpectations, check_reply
from silorec.audit.verdict import Verdict, Violation
from silorec.data.domain import DomainData
from silorec.models import model_adapter_spec, model_weight_spec
from silorec.node.canaries import Canaries
from silorec.node.leakage import RUN, IdentifierScanner, SequenceScanner
from silorec.scenario.schema import Scenario
from silorec.wire.metrics import MAX_PAIR_MODELS

REDACTED = "<redacted>"


@dataclass(frozen=True)
class DomainScanners:
    """Detectors (b) and (c) for one domain: its users' item runs and identifiers,
    and those of its canaries, reported apart."""

    sequences: SequenceScanner
    identifiers: IdentifierScanner

    @classmethod
    def for_domain(
        cls, domain: DomainData, canaries: Canaries, min_identifier_length: int
    ) -> DomainScanners:
        """Scanners for ``domain`` (canaries may already be planted in it)."""
        canary_ids = set(canaries.user_ids)
        real = [u for u, name in enumerate(domain.user_ids) if name not in canary_ids]
        sequences = SequenceScanner(
            domain.n_items,
            {"user": [domain.sequence(u) for u in real], "canary": canaries.sequences},
        )
        identifiers = IdentifierScanner(
            {
                "user": [domain.user_ids[u] for u in real],
                "item": domain.items.ids,
                "canary": canaries.user_ids,
            },
            min_identifier_length,
        )
        return cls(sequences, identifiers)

    def scan(self, where: str, data: bytes | np.ndarray) -> list[Violation]:
        """Item runs and identifiers in ``data``, as violations located at ``where``."""
        buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
        violations = []
        for hit in self.sequences.scan(buffer):
            rule = "canary" if hit.group == "canary" else "sequence"
            violations.append(
                Violation(
                    rule,
                    where,
                    f"{hit.runs} run(s) of {RUN} consecutive "
                    f"item ids of {hit.group} sequences as {hit.encoding} "
                    f"(first at byte {hit.offset})",
                )
            )
        for found in self.identifiers.scan(buffer):
            rule = "canary" if found.kind == "canary" else "identifier"
            violations.append(
                Violation(rule, where, f"{found.count} raw {found.kind} identifier(s)")
            )
        return violations

    def scan_text(self, where: str, text: str) -> list[Violation]:
        return self.scan(where, text.encode("utf-8"))

    def scan_payload(self, payload: Payload) -> list[Violation]:
        """Every array's bytes, every string, bytes value and number list, every key
        and name of ``payload``, and its scalar values together."""
        found = [v for where, data in _pieces(payload) for v in self.scan(where, data)]
        return found + self.scan_scalars(_scalar_values(payload))

    def scan_scalars(self, values: list[float]) -> list[Violation]:
        """All scalar values of a reply, in order, read as numbers (a run of ids spread
        one per key is still a run). Where a reply has many values (an evaluate reply's
        paired sums: thousands of small integers), a run of three occurs by chance
        about once in fifteen Amazon-sized replies (measured: an honest reply was
        blocked), so there at least :data:`MIN_RUNS_AMONG_MANY_SCALARS` runs are needed;
        a leak of histories holds far more."""
        many = len(values) > MANY_SCALARS
        hits = self.sequences.scan_values(
            np.asarray(values, dtype=np.float64),
            min_runs=MIN_RUNS_AMONG_MANY_SCALARS if many else 1,
        )
        where = "the reply's scalar values, together"
        return [
            Violation("canary" if h.group == "canary" else "sequence", where,
                      f"{h.runs} run(s) of {RUN} consecutive item ids of {h.group} "
                      f"sequences as {h.encoding}")
            for h in hits
        ]  # fmt: skip

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with identifiers replaced, and how many were."""
        return self.identifiers.redact(text, REDACTED)


class NodeGuard:
    """Judges a node's replies: the wire policy with this node's expectations, then
    the detectors. Violation texts are redacted (a hostile key may be an identifier)."""

    def __init__(self, expectations: WireExpectations, scanners: DomainScanners) -> None:
        self.expectations = expectations
        self.scanners = scanners

    @classmethod
    def for_node(
        cls,
        scenario: Scenario,
        domain: DomainData,
        text_dim: int,
        scanners: DomainScanners,
        max_models: int = MAX_PAIR_MODELS,
    ) -> NodeGuard:
        """The guard of a node holding ``domain`` with ``text_dim``-sized embeddings
        (``max_models``: its floor's limit of models per evaluate request)."""
        texts_allowed = scenario.uploads_item_texts
        expectations = WireExpectations(
            domain=domain.name,
            weights=model_weight_spec(scenario.model, text_dim),
            n_items=domain.n_items,
            text_dim=text_dim,
            item_texts_allowed=texts_allowed,
            catalogue_texts=(
                tuple(domain.items.texts(scenario.text.fields)) if texts_allowed else None
            ),
            metric_ks=tuple(scenario.evaluation.ks),
            max_models=max_models,
            adapter=(
                model_adapter_spec(scenario.model, text_dim, scenario.weave.rank,
                                   scenario.weave.layers)
                if scenario.weave.enabled else None
            ),  # fmt: skip
        )
        return cls(expectations, scanners)

    def inspect(
        self, message_type: str, payload: Payload, info: PayloadInfo | None = None
    ) -> Verdict:
        """The verdict on ``payload`` as a reply to a ``message_type`` message
        (``info``: its description, when the caller already has it)."""
        started = time.perf_counter()
        info = info or describe(payload)
        found = check_reply(message_type, info, self.expectations)
        found += self.scanners.scan_payload(payload)
        violations = tuple(self._redacted(v) for v in found)
        blocked = None
        if violations:
            blocked = describe(payload, withhold_values=True, redact=self.redact_text)
        return Verdict(violations, blocked, scan_seconds=time.perf_counter() - started)

    def redact(self, text: str) -> tuple[str, int]:
        """``text`` with identifiers replaced, and how many were."""
        return self.scanners.redact(text)

    def redact_text(self, text: str) -> str:
        return self.redact(text)[0]

    def _redacted(self, violation: Violation) -> Violation:
        return replace(
            violation,
            where=self.redact_text(violation.where),
            detail=self.redact_text(violation.detail),
        )


def _pieces(payload: Payload) -> Iterator[tuple[str, bytes | np.ndarray]]:
    """``(where, bytes)`` for everything in ``payload`` that could hide data: every
    array, every string, bytes value and number list, every key and name (also as
    what they decode to, see :func:`_decodings`). Scalar values are not bytes to
    scan: :func:`_scalar_values`."""
    for record in payload.records:
        yield from _text_pieces(f"record name '{record.name}'", record.name)
        for name, array in record.arrays.items():
            where = f"array '{record.name}/{name}'"
            yield from _text_pieces(f"{where} (name)", name)
            yield where, array.buffer
        many = len(record.entries) > KEYS_SCANNED_ONE_BY_ONE
        if many:  # one scan over all the names: bounded cost for a million keys
            yield from _text_pieces(
                f"{record.kind} '{record.name}' keys ({len(record.entries)} names)",
                "\n".join(record.entries),
            )
        for key, value in record.entries.items():
            where = f"{record.kind} '{record.name}' key '{key}'"
            if not many:
                yield from _text_pieces(f"{where} (name)", key)
            if isinstance(value, bool | int | float):
                continue
            if isinstance(value, str):
                yield from _text_pieces(where, value)
                continue
            data = _value_bytes(value)
            if data:
                yield where, data
    # Scalars are scanned as numbers, together: see DomainScanners.scan_scalars.


#: Above this many scalar values in one reply, a run found among them must come with
#: others (see DomainScanners.scan_scalars).
MANY_SCALARS = 64
MIN_RUNS_AMONG_MANY_SCALARS = 3

#: A record with more entries than this has its key names scanned in one piece (joined
#: by newlines) rather than one by one, so that a reply with a million keys costs one
#: scan, not a million (the policy blocks such a reply anyway).
KEYS_SCANNED_ONE_BY_ONE = 256

#: Tokens worth trying to decode: long enough to hold an identifier or a run of ids.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_BASE32 = re.compile(r"[A-Z2-7]{8,}=*")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){4,}")


def _text_pieces(where: str, text: str) -> Iterator[tuple[str, bytes]]:
    """A string as UTF-8, and as each of its :func:`_decodings`."""
    yield where, text.encode("utf-8")
    for encoding, data in _decodings(text):
        yield f"{where} (decoded as {encoding})", data


def _decodings(text: str) -> Iterator[tuple[str, bytes]]:
    """What a string could be hiding: its base64, base32 and hex tokens decoded, and
    the string with NUL characters removed (UTF-16 text read as UTF-8)."""
    if "\0" in text:
        yield "UTF-16", text.replace("\0", "").encode("utf-8")
    for match in _HEX.finditer(text):
        yield "hex", bytes.fromhex(match.group())
    for match in _BASE32.finditer(text):
        token = match.group()
        try:
            yield "base32", base64.b32decode(token + "=" * (-len(token) % 8))
        except (binascii.Error, ValueError):
            pass
    for match in _BASE64.finditer(text):
        token = match.group().rstrip("=")
        for alphabet, decode in (
            ("base64", base64.b64decode),
            ("base64url", base64.urlsafe_b64decode),
        ):
            try:
                yield alphabet, decode(token + "=" * (-len(token) % 4))
            except (binascii.Error, ValueError):
                pass


def _scalar_values(payload: Payload) -> list[float]:
    """Every number held alone under a key, in record and key order."""
    return [
        float(value)
        for record in payload.records
        for value in record.entries.values()
        if isinstance(value, bool | int | float)
    ]


def _value_bytes(value: object) -> bytes:
    """The bytes of a config/metric value worth scanning: text, bytes, number lists.
    A lone number carries too little to hold a run of item ids."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(v, bool | int) for v in value):
            return np.asarray(value, dtype=np.int64).tobytes()
        if all(isinstance(v, int | float) for v in value):
            return np.asarray(value, dtype=np.float64).tobytes()
        return b"\0".join(_value_bytes(v) for v in value)
    return b""
