"""The wire policy: a fail-closed allow-list of what a domain node's reply may hold.

Per message type of :mod:`silorec.wire.protocol`:

- describe: ``info`` {domain: str, unseen: bool} and ``metrics`` (float scalars
  whose names are on the describe allow-list of :mod:`silorec.wire.metrics`);
- train: ``info`` {domain}, ``weights`` (exactly the model's own parameters: names,
  shapes, float32), ``item_embeddings`` {"text": float32 [n_items, text_dim]},
  ``metrics`` (float scalars named on the train allow-list), in a weaving scenario
  ``adapter`` (exactly the scenario's LoRA tensors: names, shapes, float32) and, only where the scenario needs the catalogue's texts
  on the server (a text-encoder model with a learned merge), ``item_texts``
  {"texts": exactly n_items strings}, which the node's guard also requires to be its
  own catalogue's texts;
- evaluate: ``info`` {domain}, one ``result:<label>`` metric record per model (at
  most the node's ``max-evaluate-models``), keyed ``<split>/<metric>`` with the
  scenario's metrics, and ``pairs``: paired-comparison sums keyed
  ``<split>/<metric>/<i>/<j>/<statistic>`` for ``i < j`` models of the request.

Scalars are a channel too (10,000 metric keys each holding one float item id would
carry a log), so metric names are an allow-list per reply kind and their number is
bounded by it.

Anything else is a violation. The policy judges a :class:`PayloadInfo` (no data, no
Flower), so the node applies it before sending, ``silorec audit`` replays it on the
logs, and a deployment can preview it. What is *missing* from a reply is not the
policy's business (nothing leaks by absence): the merge server rejects incomplete
uploads itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from silorec.audit.payload import NUMPY_STYPE, ArrayInfo, PayloadInfo, RecordInfo
from silorec.audit.verdict import Violation
from silorec.wire import metrics as metric_names
from silorec.wire import protocol

#: Parameter name -> (shape, dtype), as :func:`silorec.models.model_weight_spec` gives.
WeightSpec = Mapping[str, tuple[tuple[int, ...], str]]

FLOAT32 = "float32"
#: Evaluate metric keys: ``<split>/<metric>`` with the scenario's split names.
RESULT_KEY = re.compile(r"^(valid|test)/[a-z][a-z0-9_@.]*$")


@dataclass(frozen=True)
class WireExpectations:
    """What this node's replies must match: its domain, the model's parameters, and the
    catalogue size and text dimension (``None`` when not known, e.g. a node that
    never described itself; then that dimension is not checked).

    ``item_texts_allowed``: whether train replies may carry the catalogue's item texts
    (see :attr:`silorec.scenario.Scenario.uploads_item_texts`); ``catalogue_texts``:
    the texts they must then be, exactly (the node's guard knows them; a replay from
    the logs does not, and checks their count and types only).
    """

    domain: str
    weights: WeightSpec
    n_items: int | None = None
    text_dim: int | None = None
    item_texts_allowed: bool = False
    catalogue_texts: tuple[str, ...] | None = None
    #: The scenario's ranking cut-offs (evaluate metric names); None: any ``@K``.
    metric_ks: tuple[int, ...] | None = None
    #: The most models one evaluate reply may report on (the node's floor).
    max_models: int = metric_names.MAX_PAIR_MODELS
    #: A weaving scenario's LoRA adapter tensors (None: no adapter may be sent).
    adapter: WeightSpec | None = None


RecordRule = Callable[[RecordInfo, WireExpectations], list[Violation]]


def check_reply(
    message_type: str, payload: PayloadInfo, expected: WireExpectations
) -> list[Violation]:
    """Every way ``payload``, a reply to a ``message_type`` message, breaks the policy
    (empty: it may be sent)."""
    rules = _RULES.get(message_type)
    violations: list[Violation] = []
    results = [r for r in payload.records if r.name.startswith(protocol.RESULT_PREFIX)]
    if message_type == protocol.EVALUATE and len(results) > expected.max_models:
        violations.append(
            Violation(
                "allow-list",
                f"records '{protocol.RESULT_PREFIX}*'",
                f"{len(results)} model results, at most {expected.max_models} may leave",
            )
        )
    for record in payload.records:
        rule = None if rules is None else _rule_for(rules, record.name)
        if rule is None:
            violations.append(_unexpected_record(record, message_type))
            violations.extend(_non_float_arrays(record))
        else:
            violations.extend(rule(record, expected))
    return violations


def _rule_for(rules: Mapping[str, RecordRule], name: str) -> RecordRule | None:
    if name in rules:
        return rules[name]
    if name.startswith(protocol.RESULT_PREFIX) and f"{protocol.RESULT_PREFIX}*" in rules:
        return rules[f"{protocol.RESULT_PREFIX}*"]
    return None


# -- records --------------------------------------------------------------------


def _kind_is(record: RecordInfo, kind: str) -> list[Violation]:
    if record.kind == kind:
        return []
    return [
        Violation(
            "type", f"record '{record.name}'", f"is a {record.kind} record, expected kind '{kind}'"
        )
    ]


def _info(allowed: Mapping[str, type]) -> RecordRule:
    """``info``: only the keys in ``allowed``, with their types; ``domain`` must be
    the node's own domain (the only string a node sends)."""

    def rule(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
        violations = _kind_is(record, "config")
        for key, value in record.entries.items():
            where = f"config '{record.name}' key '{key}'"
            if key not in allowed:
                violations.append(
                    Violation("allow-list", where, f"is not allowed ({_value_kind(value)})")
                )
            elif type(value) is not allowed[key]:
                violations.append(
                    Violation(
                        "type", where, f"is {_value_kind(value)}, expected {allowed[key].__name__}"
                    )
                )
            elif key == "domain" and value != expected.domain:
                violations.append(
                    Violation("value", where, f"is not this node's domain '{expected.domain}'")
                )
        return violations

    return rule


def _scalar_metrics(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """Metrics: float scalars only (no lists, no integers: the apps send floats)."""
    violations = _kind_is(record, "metric")
    for key, value in record.entries.items():
        if type(value) is not float:
            violations.append(
                Violation(
                    "type",
                    f"metric '{record.name}' key '{key}'",
                    f"is {_value_kind(value)}, only float scalars may leave",
                )
            )
    return violations


def _named_metrics(allowed: frozenset[str], kind: str) -> RecordRule:
    """Float scalars whose names are in ``allowed`` (the ``kind`` reply's allow-list)."""

    def rule(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
        violations = _scalar_metrics(record, expected)
        unknown = [key for key in record.entries if key not in allowed]
        violations.extend(_unlisted(record, unknown, f"on the {kind} metric allow-list"))
        return violations

    return rule


def _result_metrics(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """``<split>/<metric>`` with the scenario's metrics (any ``@K`` when not known)."""
    violations = _scalar_metrics(record, expected)
    if expected.metric_ks is not None:
        allowed = metric_names.evaluate_metric_names(expected.metric_ks)
        unknown = [key for key in record.entries if key not in allowed]
    else:
        unknown = [key for key in record.entries if not RESULT_KEY.match(key)]
    violations.extend(_unlisted(record, unknown, "of the form <split>/<metric>"))
    return violations


def _pair_metrics(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """``<split>/<metric>/<i>/<j>/<statistic>``, ``i < j < max_models``, bounded."""
    violations = _scalar_metrics(record, expected)
    limit = metric_names.pair_key_limit(expected.max_models)
    if len(record.entries) > limit:
        violations.append(
            Violation(
                "allow-list",
                f"metric '{record.name}'",
                f"has {len(record.entries)} keys, at most {limit} for {expected.max_models} models",
            )
        )
    unknown = [k for k in record.entries if not metric_names.is_pair_key(k, expected.max_models)]
    violations.extend(
        _unlisted(record, unknown, "of the form <split>/<metric>/<i>/<j>/<statistic>")
    )
    return violations


def _unlisted(record: RecordInfo, keys: list[str], form: str) -> list[Violation]:
    """One violation per disallowed key, up to 10, then one for the rest (a hostile
    reply may hold a million keys: the verdict must stay readable)."""
    shown = [
        Violation("allow-list", f"metric '{record.name}' key '{key}'", f"is not {form}")
        for key in keys[:10]
    ]
    if len(keys) > 10:
        shown.append(
            Violation(
                "allow-list",
                f"metric '{record.name}'",
                f"{len(keys) - 10} more keys that are not {form}",
            )  # fmt: skip
        )
    return shown


def _weights(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """Exactly the model's own parameters: known names, their shapes, their dtype."""
    violations = _kind_is(record, "array")
    for array in record.arrays:
        where = f"array '{record.name}/{array.name}'"
        spec = expected.weights.get(array.name)
        if spec is None:
            violations.append(
                Violation(
                    "allow-list", where, f"is not a parameter of the model ({_array_kind(array)})"
                )
            )
            violations.extend(_non_float(array, where))
            continue
        shape, dtype = spec
        violations.extend(_array_matches(array, where, shape, dtype))
    return violations


def _adapter(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """Exactly the scenario's adapter tensors, and only in a weaving scenario."""
    if expected.adapter is None:
        return [Violation("allow-list", f"record '{record.name}'",
                          "is an adapter, and this scenario weaves none")]  # fmt: skip
    return _weights(record, replace(expected, weights=expected.adapter))


def _item_embeddings(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """One float32 array ``text`` of shape [n_items, text_dim]: the catalogue's text
    embeddings, no identifiers."""
    violations = _kind_is(record, "array")
    for array in record.arrays:
        where = f"array '{record.name}/{array.name}'"
        if array.name != protocol.ITEM_EMBEDDINGS_ARRAY:
            violations.append(
                Violation("allow-list", where, f"is not allowed ({_array_kind(array)})")
            )
            violations.extend(_non_float(array, where))
            continue
        rows = expected.n_items if expected.n_items is not None else _dim(array, 0)
        columns = expected.text_dim if expected.text_dim is not None else _dim(array, 1)
        violations.extend(_array_matches(array, where, (rows, columns), FLOAT32))
    return violations


def _item_texts(record: RecordInfo, expected: WireExpectations) -> list[Violation]:
    """``texts``: a list of exactly n_items strings, the node's own catalogue texts
    when known, and only where the scenario allows item texts at all."""
    if not expected.item_texts_allowed:
        return [
            Violation(
                "allow-list",
                f"record '{record.name}'",
                "item texts may only leave a node of a 'text-encoder' scenario with a "
                "learned merge",
            )
        ]
    violations = _kind_is(record, "config")
    for key, value in record.entries.items():
        where = f"config '{record.name}' key '{key}'"
        if key != protocol.ITEM_TEXTS_KEY:
            violations.append(
                Violation("allow-list", where, f"is not allowed ({_value_kind(value)})")
            )
        elif not (isinstance(value, list) and all(type(v) is str for v in value)):
            violations.append(
                Violation("type", where, f"is {_value_kind(value)}, expected list[str]")
            )
        elif expected.n_items is not None and len(value) != expected.n_items:
            violations.append(
                Violation(
                    "shape",
                    where,
                    f"has {len(value)} texts, expected one per item ({expected.n_items})",
                )
            )
        elif expected.catalogue_texts is not None and tuple(value) != expected.catalogue_texts:
            differing = sum(a != b for a, b in zip(value, expected.catalogue_texts, strict=False))
            violations.append(
                Violation(
                    "value",
                    where,
                    f"{differing} of {len(value)} texts are not this node's catalogue texts",
                )
            )
    return violations


_RULES: dict[str, dict[str, RecordRule]] = {
    protocol.DESCRIBE: {
        protocol.INFO: _info({"domain": str, "unseen": bool}),
        protocol.METRICS: _named_metrics(metric_names.DESCRIBE_METRICS, "describe"),
    },
    protocol.TRAIN: {
        protocol.INFO: _info({"domain": str}),
        protocol.WEIGHTS: _weights,
        protocol.ADAPTER: _adapter,
        protocol.ITEM_EMBEDDINGS: _item_embeddings,
        protocol.ITEM_TEXTS: _item_texts,
        protocol.METRICS: _named_metrics(metric_names.TRAIN_METRICS, "train"),
    },
    protocol.EVALUATE: {
        protocol.INFO: _info({"domain": str}),
        f"{protocol.RESULT_PREFIX}*": _result_metrics,
        # Sums over users of per-user metric differences between two models.
        protocol.PAIRS: _pair_metrics,
    },
}


# -- pieces -----------------------------------------------------------------------


def _unexpected_record(record: RecordInfo, message_type: str) -> Violation:
    if record.kind == "array":
        content = ", ".join(f"'{a.name}' {_array_kind(a)}" for a in record.arrays) or "empty"
    else:
        content = ", ".join(f"'{k}' {_value_kind(v)}" for k, v in record.entries.items())
    return Violation(
        "allow-list",
        f"record '{record.name}'",
        f"({record.kind}: {content or 'empty'}) is not allowed in a '{message_type}' reply",
    )


def _non_float_arrays(record: RecordInfo) -> list[Violation]:
    return [v for a in record.arrays for v in _non_float(a, f"array '{record.name}/{a.name}'")]


def _non_float(array: ArrayInfo, where: str) -> list[Violation]:
    """Detector (a): integer, boolean, string or opaque arrays never leave a node."""
    if array.stype != NUMPY_STYPE:
        return [Violation("type", where, f"is opaque '{array.stype}' data, not a numpy array")]
    if not _is_float(array.dtype):
        return [
            Violation(
                "type",
                where,
                f"is {array.dtype}: integer, boolean and text arrays never leave a node",
            )
        ]
    return []


def _array_matches(
    array: ArrayInfo, where: str, shape: tuple[int | None, ...], dtype: str
) -> list[Violation]:
    type_problems = _non_float(array, where)
    if type_problems:
        return type_problems
    if array.dtype != dtype:
        return [Violation("type", where, f"is {array.dtype}, expected {dtype}")]
    if len(array.shape) != len(shape) or any(
        want is not None and have != want for have, want in zip(array.shape, shape, strict=False)
    ):
        wanted = "[" + ", ".join("?" if n is None else str(n) for n in shape) + "]"
        return [Violation("shape", where, f"has shape {list(array.shape)}, expected {wanted}")]
    return []


def _is_float(dtype: str) -> bool:
    """``float32`` etc., or a float in foreign byte order (``>f4``)."""
    return dtype.startswith("float") or dtype[1:2] == "f"


def _dim(array: ArrayInfo, axis: int) -> int | None:
    return array.shape[axis] if len(array.shape) > axis else None


def _array_kind(array: ArrayInfo) -> str:
    return f"{array.dtype} {list(array.shape)}"


def _value_kind(value: Any) -> str:
    """A value's type and size, never the value itself."""
    if isinstance(value, dict):
        return f"bytes ({value.get('bytes', value.get('size', '?'))} bytes)"
    if isinstance(value, str):
        return f"str ({len(value.encode())} bytes)"
    if isinstance(value, list):
        kinds = sorted({type(v).__name__ if not isinstance(v, dict) else "bytes" for v in value})
        return f"list[{'|'.join(kinds) or 'empty'}] ({len(value)} values)"
    return type(value).__name__
