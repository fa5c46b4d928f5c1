"""The merge server's validator: one reader per reply kind that either returns the
reply's values, checked, or raises :class:`ReplyRejected` with a reason a person can
read. Nothing a node sends reaches the merge unchecked.

The node's own guard already refuses to *send* what breaks the wire policy; this is
the other side of the same contract, for a node that does not run that guard (a
modified ClientApp, a bug, a hostile party): missing or extra records and keys,
wrong dtypes (float16, int8 ...), wrong shapes, NaN/Inf, metric names outside the
allow-list (:mod:`silorec.wire.metrics`), sizes that disagree with what the node said
when it described itself, an empty catalogue. It works on the audit's Flower-free
:class:`~silorec.audit.payload.Payload` form, so it is tested without Flower.

What it cannot judge from one reply alone (a task vector whose norm is an outlier
against the other domains') is in :func:`screen_task_vectors`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from silorec.audit.payload import NUMPY_STYPE, Payload, WireArray, WireRecord
from silorec.wire import metrics as names
from silorec.wire import protocol

#: Parameter name -> (shape, dtype), as :func:`silorec.models.weight_spec` gives.
WeightSpec = Mapping[str, tuple[tuple[int, ...], str]]

FLOAT32 = "float32"


class ReplyRejected(ValueError):
    """A reply the merge server does not accept; the message says why."""


@dataclass(frozen=True)
class DescribeReply:
    domain: str
    unseen: bool
    stats: dict[str, float]

    @property
    def n_users(self) -> int:
        return int(self.stats["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.stats["n_items"])

    @property
    def text_dim(self) -> int:
        return int(self.stats["text_dim"])

    @property
    def mean_length(self) -> float | None:
        """Interactions per user (what rolled-out pseudo-users imitate); ``None``
        when the reply does not say."""
        users, interactions = self.stats.get("n_users", 0.0), self.stats.get("n_interactions", 0.0)
        return interactions / users if users > 0 and interactions > 0 else None


@dataclass(frozen=True)
class TrainReply:
    weights: dict[str, np.ndarray]
    item_embeddings: np.ndarray
    metrics: dict[str, float]
    item_texts: list[str] | None = None

    @property
    def n_train_sequences(self) -> float:
        return self.metrics["n_train_sequences"]


@dataclass(frozen=True)
class EvaluateReply:
    """Per model label and split, the metrics (``n_users`` kept apart); the paired
    sums by key; and what was dropped (non-finite or out-of-range values), by reason."""

    results: dict[str, dict[str, dict[str, float]]]
    n_users: dict[str, dict[str, int]]
    pairs: dict[str, float]
    dropped: list[str]


# -- describe --------------------------------------------------------------------------


def read_describe(payload: Payload) -> DescribeReply:
    records = _records(payload, required={protocol.INFO: "config", protocol.METRICS: "metric"})
    info = _config(records[protocol.INFO], {"domain": str, "unseen": bool}, required=("domain",))
    domain = info["domain"]
    if not domain.strip():
        raise ReplyRejected("info 'domain' is empty")
    stats = _scalars(records[protocol.METRICS], names.DESCRIBE_METRICS, names.DESCRIBE_REQUIRED)
    for key in ("n_users", "n_items", "text_dim"):
        _count(stats, key, minimum=1)
    if "n_evaluable_users" in stats and stats["n_evaluable_users"] > stats["n_users"]:
        raise ReplyRejected(
            f"metric 'n_evaluable_users' ({stats['n_evaluable_users']:g}) exceeds "
            f"'n_users' ({stats['n_users']:g})"
        )
    return DescribeReply(domain, bool(info.get("unseen", False)), stats)


# -- train -------------------------------------------------------------------------------


def read_train(
    payload: Payload,
    *,
    domain: str,
    weights: WeightSpec,
    described: DescribeReply,
    item_texts: bool,
    held_embeddings: np.ndarray | None = None,
) -> TrainReply:
    """A train reply from the node that described itself as ``described``: exactly the
    model's parameters (float32, finite), the catalogue's embeddings, allowed metrics,
    a training-set size no larger than the domain it described, and the item texts
    if and only if ``item_texts``. ``held_embeddings``: the catalogue the server
    already holds from this node (its hash was in the request); the reply may then
    leave the embeddings out, and the held ones stand for them."""
    optional = {protocol.ITEM_TEXTS: "config"} if item_texts else {}
    required = {
        protocol.INFO: "config",
        protocol.WEIGHTS: "array",
        protocol.ITEM_EMBEDDINGS: "array",
        protocol.METRICS: "metric",
    }
    if held_embeddings is not None:
        optional[protocol.ITEM_EMBEDDINGS] = required.pop(protocol.ITEM_EMBEDDINGS)
    if item_texts:
        required[protocol.ITEM_TEXTS] = "config"
    records = _records(payload, required=required, optional=optional)
    _check_domain(records[protocol.INFO], domain)
    model = _arrays(records[protocol.WEIGHTS], weights)  # names, shapes, float32, finite
    if protocol.ITEM_EMBEDDINGS in records:
        embeddings = _arrays(
            records[protocol.ITEM_EMBEDDINGS],
            {protocol.ITEM_EMBEDDINGS_ARRAY: ((described.n_items, described.text_dim), FLOAT32)},
        )[protocol.ITEM_EMBEDDINGS_ARRAY]
    else:
        embeddings = held_embeddings
    scalars = _train_scalars(records[protocol.METRICS], described)
    texts = None
    if item_texts:
        texts = _texts(records[protocol.ITEM_TEXTS], described.n_items)
    return TrainReply(model, embeddings, scalars, texts)


@dataclass(frozen=True)
class AdapterReply:
    adapter: dict[str, np.ndarray]
    metrics: dict[str, float]


def read_adapter_train(
    payload: Payload, *, domain: str, adapter: WeightSpec, described: DescribeReply
) -> AdapterReply:
    """A weaving train reply: exactly the adapter's tensors (float32, finite, the
    shapes sent), allowed metrics and a training-set size within the described
    domain; no model weights, no catalogue."""
    records = _records(
        payload,
        required={protocol.INFO: "config", protocol.ADAPTER: "array", protocol.METRICS: "metric"},
    )
    _check_domain(records[protocol.INFO], domain)
    trained = _arrays(records[protocol.ADAPTER], adapter)
    scalars = _train_scalars(records[protocol.METRICS], described)
    return AdapterReply(trained, scalars)


def _check_domain(record: WireRecord, domain: str) -> None:
    """The reply's ``info`` names the domain this node serves."""
    info = _config(record, {"domain": str}, required=("domain",))
    if info["domain"] != domain:
        raise ReplyRejected(f"info 'domain' is '{info['domain']}', this node serves '{domain}'")


def _train_scalars(record: WireRecord, described: DescribeReply) -> dict[str, float]:
    """A train reply's allowed metrics, with a training-set size no larger than the
    domain the node described (FedAvg weights must not be steerable by a claim)."""
    scalars = _scalars(record, names.TRAIN_METRICS, names.TRAIN_REQUIRED)
    size = _count(scalars, "n_train_sequences", minimum=1)
    if size > described.n_users:
        raise ReplyRejected(
            f"metric 'n_train_sequences' claims {size} training sequences, but the node "
            f"described a domain of {described.n_users} users (one sequence per user)"
        )
    return scalars


# -- evaluate ----------------------------------------------------------------------------


def read_evaluate(
    payload: Payload,
    *,
    domain: str,
    labels: Sequence[str],
    splits: Sequence[str],
    ks: Sequence[int],
) -> EvaluateReply:
    """An evaluate reply: one result record per requested label, each with the
    requested splits' ``n_users`` and metrics; optional paired sums. A record that
    is missing, or a key outside the allow-list, rejects the reply; a value that is
    not finite or not in [0, 1] is dropped and named in ``dropped``."""
    result_names = {f"{protocol.RESULT_PREFIX}{label}": label for label in labels}
    required = {protocol.INFO: "config", **{name: "metric" for name in result_names}}
    records = _records(payload, required=required, optional={protocol.PAIRS: "metric"})
    _check_domain(records[protocol.INFO], domain)
    allowed = names.evaluate_metric_names(ks)
    results: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, dict[str, int]] = {}
    dropped: list[str] = []
    for record_name, label in result_names.items():
        entries = _scalar_entries(records[record_name], allowed, dropped)
        results[label], counts[label] = {}, {}
        for split in splits:
            prefix = f"{split}{protocol.SPLIT_SEPARATOR}"
            values = {k.removeprefix(prefix): v for k, v in entries.items() if k.startswith(prefix)}
            n_users = values.pop(names.EVALUATE_COUNT, None)
            if n_users is None or not _is_count(n_users) or n_users < 1:
                raise ReplyRejected(
                    f"record '{record_name}': split '{split}' has no valid '{names.EVALUATE_COUNT}'"
                    f" ({_show(n_users)})"
                )
            kept = {}
            for metric, value in values.items():
                if math.isfinite(value) and 0.0 <= value <= 1.0:
                    kept[metric] = value
                else:
                    dropped.append(f"model '{label}' {split}/{metric} = {_show(value)}")
            results[label][split], counts[label][split] = kept, int(n_users)
    pairs: dict[str, float] = {}
    if protocol.PAIRS in records:
        record = records[protocol.PAIRS]
        if len(record.entries) > names.pair_key_limit(len(labels)):
            raise ReplyRejected(
                f"record 'pairs' has {len(record.entries)} keys, at most "
                f"{names.pair_key_limit(len(labels))} for {len(labels)} models"
            )
        for key, value in record.entries.items():
            if not names.is_pair_key(key, len(labels)):
                raise ReplyRejected(
                    f"record 'pairs': key '{_short(key)}' is not a paired statistic"
                )
            if not _is_number(value) or not math.isfinite(value):
                dropped.append(f"pairs {key} = {_show(value)}")
                continue
            pairs[key] = float(value)
    return EvaluateReply(results, counts, pairs, dropped)


# -- across domains --------------------------------------------------------------------


@dataclass(frozen=True)
class Screening:
    """What :func:`screen_task_vectors` decided: domains rejected (with reasons), the
    clip applied to each kept domain's task vector (1.0: untouched), and the norms."""

    rejected: dict[str, str]
    scale: dict[str, float]
    norms: dict[str, float]


def screen_task_vectors(
    base: Mapping[str, np.ndarray],
    models: Mapping[str, Mapping[str, np.ndarray]],
    *,
    outlier_ratio: float | None,
    clip_ratio: float | None,
) -> Screening:
    """Norms of each domain's task vector ``W − θ0``, each judged against the median of
    the *other* domains' norms (a domain cannot hide its outlier in a median it
    dominates): over ``outlier_ratio`` times that median (or not finite), the upload
    is rejected; otherwise it is scaled down to at most ``clip_ratio`` times that
    median. Clipping rather than rejecting keeps what an inflated but useful update
    contributes (a domain's task vector x100 is its own direction, clipped back near
    its honest size). Either check is off when its ratio is None, or with a single
    domain."""
    norms = {d: _task_vector_norm(base, w) for d, w in models.items()}
    rejected: dict[str, str] = {}
    if outlier_ratio is not None and len(norms) >= 2:
        for domain, norm in norms.items():
            others = float(np.median([n for d, n in norms.items() if d != domain]))
            if not math.isfinite(norm) or norm > outlier_ratio * max(others, 1e-12):
                rejected[domain] = (
                    f"task vector norm {norm:.4g} is {norm / max(others, 1e-12):.3g}x the "
                    f"median of the other domains' ({others:.4g}), over the limit of "
                    f"{outlier_ratio:g}x (federation.max_task_vector_norm_ratio)"
                )
    kept = {d: n for d, n in norms.items() if d not in rejected}
    scale = dict.fromkeys(kept, 1.0)
    if clip_ratio is not None and len(kept) >= 2:
        for domain, norm in kept.items():
            limit = clip_ratio * float(np.median([n for d, n in kept.items() if d != domain]))
            if norm > limit > 0:
                scale[domain] = limit / norm
    return Screening(rejected, scale, norms)


def clipped(
    base: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray], scale: float
) -> dict[str, np.ndarray]:
    """``θ0 + scale · (W − θ0)`` (``weights`` itself when ``scale`` is 1)."""
    if scale == 1.0:
        return dict(weights)
    return {k: (base[k] + scale * (weights[k] - base[k])).astype(np.float32) for k in weights}


def _task_vector_norm(base: Mapping[str, np.ndarray], weights: Mapping[str, np.ndarray]) -> float:
    total = 0.0
    for key, value in weights.items():
        diff = value.astype(np.float64) - base[key].astype(np.float64)
        total += float(np.dot(diff.ravel(), diff.ravel()))
    return math.sqrt(total)


# -- pieces ------------------------------------------------------------------------------


def _records(
    payload: Payload,
    *,
    required: Mapping[str, str],
    optional: Mapping[str, str] | None = None,
) -> dict[str, WireRecord]:
    """The reply's records by name: each of ``required`` present with its kind, none
    but those and ``optional``, none twice."""
    optional = optional or {}
    out: dict[str, WireRecord] = {}
    for record in payload.records:
        expected = required.get(record.name) or optional.get(record.name)
        if expected is None:
            raise ReplyRejected(f"unexpected record '{_short(record.name)}' ({record.kind})")
        if record.kind != expected:
            raise ReplyRejected(
                f"record '{record.name}' is a {record.kind} record, expected {expected}"
            )
        if record.name in out:
            raise ReplyRejected(f"record '{record.name}' appears twice")
        out[record.name] = record
    missing = [name for name in required if name not in out]
    if missing:
        raise ReplyRejected("missing record(s): " + ", ".join(f"'{_short(m)}'" for m in missing))
    return out


def _config(
    record: WireRecord, allowed: Mapping[str, type], *, required: Collection[str]
) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in record.entries.items():
        want = allowed.get(key)
        if want is None:
            raise ReplyRejected(f"record '{record.name}': unexpected key '{_short(key)}'")
        if type(value) is not want:
            raise ReplyRejected(
                f"record '{record.name}' key '{key}' is {type(value).__name__}, "
                f"expected {want.__name__}"
            )
        out[key] = value
    missing = [k for k in required if k not in out]
    if missing:
        raise ReplyRejected(f"record '{record.name}' lacks key(s) {', '.join(missing)}")
    return out


def _scalar_entries(
    record: WireRecord, allowed: Collection[str], dropped: list[str] | None = None
) -> dict[str, float]:
    """Every entry: an allowed name holding a number (not yet checked for finiteness).
    A value that is not a number rejects the reply, or, given ``dropped``, is left out
    and named there."""
    out: dict[str, float] = {}
    for key, value in record.entries.items():
        if key not in allowed:
            raise ReplyRejected(f"record '{record.name}': metric '{_short(key)}' is not allowed")
        if not _is_number(value):
            problem = f"record '{record.name}' metric '{key}' is {type(value).__name__}"
            if dropped is None:
                raise ReplyRejected(f"{problem}, expected a number")
            dropped.append(f"{problem}, not a number")
            continue
        out[key] = float(value)
    return out


def _scalars(
    record: WireRecord, allowed: Collection[str], required: Collection[str]
) -> dict[str, float]:
    """Allowed, finite numbers, with every ``required`` name present."""
    out = _scalar_entries(record, allowed)
    for key, value in out.items():
        if not math.isfinite(value):
            raise ReplyRejected(f"record '{record.name}' metric '{key}' is {value}")
    missing = [k for k in required if k not in out]
    if missing:
        raise ReplyRejected(f"record '{record.name}' lacks metric(s) {', '.join(missing)}")
    return out


def _arrays(
    record: WireRecord, spec: Mapping[str, tuple[tuple[int, ...], str]]
) -> dict[str, np.ndarray]:
    """Exactly the arrays of ``spec``, each of its shape and dtype, all finite."""
    extra = [name for name in record.arrays if name not in spec]
    if extra:
        raise ReplyRejected(
            f"record '{record.name}': unexpected array(s) "
            + ", ".join(f"'{_short(n)}'" for n in extra[:3])
            + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        )
    missing = [name for name in spec if name not in record.arrays]
    if missing:
        raise ReplyRejected(
            f"record '{record.name}': missing array(s) "
            + ", ".join(f"'{n}'" for n in missing[:3])
            + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        )
    out: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in spec.items():
        out[name] = _array(record.name, name, record.arrays[name], tuple(shape), dtype)
    return out


def _array(
    record: str, name: str, array: WireArray, shape: tuple[int, ...], dtype: str
) -> np.ndarray:
    where = f"array '{record}/{name}'"
    if array.stype != NUMPY_STYPE:
        raise ReplyRejected(f"{where} is opaque '{array.stype}' data, not a numpy array")
    if array.dtype != dtype:
        raise ReplyRejected(f"{where} is {array.dtype}, expected {dtype}")
    if tuple(array.shape) != shape:
        raise ReplyRejected(f"{where} has shape {list(array.shape)}, expected {list(shape)}")
    if array.buffer.size != int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize:
        raise ReplyRejected(f"{where}: its bytes do not match its shape")
    # One copy: the server's own, writable array (the reply's buffer may be read-only).
    values = np.array(array.buffer.view(np.dtype(dtype)).reshape(shape))
    if not np.all(np.isfinite(values)):
        raise ReplyRejected(f"{where} contains NaN or Inf")
    return values


def _texts(record: WireRecord, n_items: int) -> list[str]:
    texts = record.entries.get(protocol.ITEM_TEXTS_KEY)
    if set(record.entries) != {protocol.ITEM_TEXTS_KEY}:
        raise ReplyRejected(f"record '{record.name}' must hold exactly '{protocol.ITEM_TEXTS_KEY}'")
    if not (isinstance(texts, list) and all(type(t) is str for t in texts)):
        raise ReplyRejected(
            f"record '{record.name}': '{protocol.ITEM_TEXTS_KEY}' is not a list of strings"
        )
    if len(texts) != n_items:
        raise ReplyRejected(f"{len(texts)} item texts, expected one per item ({n_items})")
    return list(texts)


def _count(values: Mapping[str, float], key: str, *, minimum: int) -> int:
    value = values[key]
    if not _is_count(value) or value < minimum:
        raise ReplyRejected(
            f"metric '{key}' is {_show(value)}, expected a whole number >= {minimum}"
        )
    if value > 2**40:
        raise ReplyRejected(f"metric '{key}' is {_show(value)}, beyond any real domain")
    return int(value)


def _is_number(value: object) -> bool:
    return type(value) in (float, int)


def _is_count(value: float) -> bool:
    return math.isfinite(value) and float(value).is_integer()


def _show(value: object) -> str:
    return "missing" if value is None else f"{value!r}"[:40]


def _short(text: str, limit: int = 60) -> str:
    """A name from the reply, shortened (it may be long, or hostile)."""
    return text if len(text) <= limit else text[:limit] + "..."
