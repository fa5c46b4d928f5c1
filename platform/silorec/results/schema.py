"""What a run records: tidy result rows plus everything needed to read them.

One :class:`RunResults` per run. It is written to ``results.json`` (see
:mod:`silorec.results.io`) and loads back into an equal object. Evaluation results are
*tidy rows* (:class:`ResultRow`): one per model x domain x split, with the metric
values in a flat dict (``recall@K``, ``ndcg@K`` for every K, ``mrr``).

Model labels and kinds used by the merge server:

============  ==========================  ========================================
kind          model label                 what it is
============  ==========================  ========================================
base          ``theta0``                  the common base model θ0
fedavg        ``fedavg``                  a FedAvg model (optional baseline)
individual    ``individual:<domain>``     a domain's own fine-tuned model; its
                                          ``source`` is that domain. Evaluated on
                                          every domain: the cross-domain matrix.
merge         the merge's display label   a merged model, e.g. ``average``,
                                          ``ties(density=0.2,lambda=1.0,scope=global)``
============  ==========================  ========================================

Domains have a role: ``merged`` (fine-tuned and contributed to the merge) or
``unseen`` (only evaluated: zero-shot transfer).

This module holds data only: it never reads interactions and never imports Flower.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    field_validator,
    model_validator,
)

Kind = Literal["base", "individual", "merge", "fedavg", "oracle", "adapter", "weave"]
Role = Literal["merged", "unseen"]
Split = Literal["valid", "test"]
NodeStatus = Literal["ok", "failed", "rejected"]
RunStatus = Literal["completed", "failed"]

#: Label of the base model θ0 in result rows.
BASE_LABEL = "theta0"
#: Label of the (optional) FedAvg baseline.
FEDAVG_LABEL = "fedavg"
#: Prefix of an individual (per-domain fine-tuned) model's label.
INDIVIDUAL_PREFIX = "individual:"

#: Order in which kinds are listed in tables and plots.
KIND_ORDER: tuple[str, ...] = (
    "base",
    "fedavg",
    "individual",
    "merge",
    "oracle",
    "adapter",
    "weave",
)
SPLIT_ORDER: tuple[str, ...] = ("valid", "test")
ROLE_ORDER: tuple[str, ...] = ("merged", "unseen")

#: Column names of the mean columns added by :meth:`RunResults.table`.
MEAN_MERGED = "mean (merged)"
MEAN_UNSEEN = "mean (unseen)"

#: Keys of :attr:`NodeRecord.info` that the report shows (others are kept in JSON).
INFO_KEYS: dict[str, str] = {
    "n_users": "users",
    "n_items": "items",
    "n_interactions": "interactions",
    "train_seconds": "train time",
    "best_epoch": "best epoch",
}

#: Privacy facts a node reports in :attr:`NodeRecord.info` (scalars of its train reply;
#: an unseen domain, which never uploads, reports its ledger when it describes itself).
#: ε is the total of the domain's privacy ledger at δ. An infinite ε (a release without
#: noise) cannot be a JSON number: it is the flag :data:`PRIVACY_EPSILON_UNBOUNDED` = 1
#: with no :data:`PRIVACY_EPSILON`.
PRIVACY_EPSILON = "privacy_epsilon"
PRIVACY_EPSILON_UNBOUNDED = "privacy_epsilon_unbounded"
PRIVACY_DELTA = "privacy_delta"
PRIVACY_NOISE_MULTIPLIER = "privacy_noise_multiplier"
PRIVACY_RELEASES = "privacy_releases"
#: Membership-inference attack on the node's upload: AUC and the two groups' sizes.
MIA_AUC = "mia_auc"
MIA_MEMBERS = "mia_members"
MIA_NON_MEMBERS = "mia_non_members"

#: Identifying columns of the tidy table (``results.csv``), before the metric columns.
ID_COLUMNS: tuple[str, ...] = (
    "run_id",
    "scenario",
    "model",
    "kind",
    "source",
    "domain",
    "domain_role",
    "split",
    "n_users",
)

SCHEMA_VERSION = 1

_METRIC_RE = re.compile(r"^(?P<family>[A-Za-z_]+)@(?P<k>\d+)$")
_FAMILY_ORDER = {"recall": 0, "ndcg": 1}


def individual_label(source: str) -> str:
    """The model label of ``source``'s own fine-tuned model."""
    return f"{INDIVIDUAL_PREFIX}{source}"


def now_iso() -> str:
    """The current time as an ISO 8601 string in UTC (for ``started_at``/``finished_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def metric_sort_key(name: str) -> tuple[int, str, int, str]:
    """Order of metric columns: ``recall@K`` by K, ``ndcg@K`` by K, ``mrr``, then the
    rest alphabetically (other ``name@K`` families by name and K)."""
    m = _METRIC_RE.match(name)
    if m:
        family, k = m.group("family"), int(m.group("k"))
        if family in _FAMILY_ORDER:
            return (_FAMILY_ORDER[family], "", k, name)
        return (4, family, k, name)
    if name == "mrr":
        return (2, "", 0, name)
    return (3, name, 0, name)


def metric_display(name: str) -> str:
    """Human form of a metric key: ``recall@10`` -> ``Recall@10``, ``mrr`` -> ``MRR``."""
    m = _METRIC_RE.match(name)
    if m:
        family = {"recall": "Recall", "ndcg": "NDCG", "hit": "Hit"}.get(
            m.group("family"), m.group("family")
        )
        return f"{family}@{m.group('k')}"
    return {"mrr": "MRR"}.get(name, name)


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON data (numpy scalars/arrays, tuples and paths converted),
    so that free dicts survive ``results.json`` and load back equal."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and not isinstance(value, np.generic):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r} cannot be stored in JSON")
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _jsonable(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: {type(value).__name__} cannot be stored in JSON")


def _check_iso(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{field} must be an ISO 8601 date-time, got {value!r}") from exc
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ResultRow(_Model):
    """One model evaluated on one domain and split."""

    model: str = Field(..., min_length=1, description="Model label, e.g. 'theta0'.")
    kind: Kind
    source: str | None = Field(
        None, description="Training domain of an individual model; None otherwise."
    )
    domain: str = Field(..., min_length=1, description="Domain evaluated on.")
    domain_role: Role
    split: Split
    n_users: int = Field(..., ge=0, description="Users evaluated.")
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _source_matches_kind(self) -> ResultRow:
        if self.kind == "individual" and not self.source:
            raise ValueError(f"row of individual model '{self.model}' needs its source domain")
        if self.kind != "individual" and self.source is not None:
            raise ValueError(f"only individual models have a source (model '{self.model}')")
        return self


class NodeRecord(_Model):
    """What the merge server knows about one domain node."""

    domain: str = Field(..., min_length=1)
    node_id: int | None = None
    role: Role
    status: NodeStatus = "ok"
    error: str | None = None
    bytes_sent: int = Field(0, ge=0, description="Payload bytes server -> node.")
    bytes_received: int = Field(0, ge=0, description="Payload bytes node -> server.")
    info: dict[str, Any] = Field(
        default_factory=dict,
        description="Free scalars reported by the node: n_users, n_items, "
        "n_interactions, train_seconds, best_epoch, ...",
    )

    @field_validator("info", mode="before")
    @classmethod
    def _info_jsonable(cls, value: Any) -> Any:
        return _jsonable(value, "info") if isinstance(value, Mapping) else value


class Failure(_Model):
    """Something that went wrong, kept in the results instead of crashing the run."""

    phase: str = Field(..., min_length=1, description="e.g. 'connect', 'train', 'merge'.")
    domain: str | None = None
    node_id: int | None = None
    reason: str


class RunResults(_Model):
    """Everything one run records. ``results.json`` is this object."""

    schema_version: int = SCHEMA_VERSION
    run_id: str = Field(..., min_length=1)
    scenario_name: str = Field(..., min_length=1)
    scenario: dict[str, Any] = Field(
        default_factory=dict, description="The validated scenario (model_dump)."
    )
    scenario_toml: str = Field("", description="The scenario file text, verbatim.")
    engine: str = ""
    status: RunStatus = "completed"
    versions: dict[str, str] = Field(default_factory=dict)
    seeds: dict[str, int] = Field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    timings: dict[str, FiniteFloat] = Field(
        default_factory=dict, description="Seconds per phase, in the order they ran."
    )
    nodes: list[NodeRecord] = Field(default_factory=list)
    failures: list[Failure] = Field(default_factory=list)
    merges: list[dict[str, Any]] = Field(
        default_factory=list, description="One dict per merge: label, method, params, seconds."
    )
    base: dict[str, Any] = Field(
        default_factory=dict,
        description="How θ0 was made. The report understands init ('seeded' or "
        "'fedavg'), seed, rounds, local_epochs and domains; other keys are listed as is.",
    )
    baselines: dict[str, Any] = Field(
        default_factory=dict,
        description="Reference models' facts, e.g. fedavg: rounds, local epochs, bytes moved; "
        "joint: the oracle's training.",
    )
    rows: list[ResultRow] = Field(default_factory=list)
    weave: dict[str, Any] = Field(
        default_factory=dict,
        description="Weaving (WeaveRec) facts: per target its sources and the labels of "
        "its target-only, source-only, hybrid and fused models; adapter size; per step "
        "the visits, seconds and bytes moved. Empty without [weave].",
    )
    derived_from: dict[str, Any] = Field(
        default_factory=dict,
        description="Set by `silorec merge add|remove`: the run this one was re-merged "
        "from, the domains removed and added, the new merge order, and whether its merges "
        "were evaluated. Empty for a run of its own.",
    )
    paired: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Per domain, split, headline metric and pair of models (a, b): n, sum "
        "and sumsq of the per-user differences a − b (see silorec.evaluation.paired).",
    )

    # -- validation ------------------------------------------------------------

    @field_validator("scenario", "base", "baselines", "derived_from", mode="before")
    @classmethod
    def _dict_jsonable(cls, value: Any, info: Any) -> Any:
        return _jsonable(value, info.field_name) if isinstance(value, Mapping) else value

    @field_validator("merges", mode="before")
    @classmethod
    def _merges_jsonable(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [
                _jsonable(m, f"merges[{i}]") if isinstance(m, Mapping) else m
                for i, m in enumerate(value)
            ]
        return value

    @field_validator("started_at", "finished_at")
    @classmethod
    def _iso(cls, value: str | None, info: Any) -> str | None:
        return _check_iso(value, info.field_name)

    @model_validator(mode="after")
    def _consistent(self) -> RunResults:
        seen: set[tuple[str, str, str]] = set()
        kinds: dict[str, str] = {}
        roles: dict[str, str] = {n.domain: n.role for n in self.nodes}
        node_domains = [n.domain for n in self.nodes]
        dupes = sorted({d for d in node_domains if node_domains.count(d) > 1})
        if dupes:
            raise ValueError(f"one node record per domain; repeated: {', '.join(dupes)}")
        for row in self.rows:
            key = (row.model, row.domain, row.split)
            if key in seen:
                raise ValueError(
                    f"duplicate result row: model '{row.model}' on domain '{row.domain}' "
                    f"({row.split})"
                )
            seen.add(key)
            if kinds.setdefault(row.model, row.kind) != row.kind:
                raise ValueError(
                    f"model '{row.model}' has rows of kinds '{kinds[row.model]}' and '{row.kind}'"
                )
            if roles.setdefault(row.domain, row.domain_role) != row.domain_role:
                raise ValueError(
                    f"domain '{row.domain}' is both '{roles[row.domain]}' and '{row.domain_role}'"
                )
        return self

    # -- lookups ---------------------------------------------------------------

    @property
    def description(self) -> str:
        """The scenario's description ('' when none)."""
        return str(self.scenario.get("description") or "")

    def domain_roles(self) -> dict[str, str]:
        """Every domain (nodes first, in their order, then any others from the rows)
        with its role, merged domains before unseen ones."""
        roles: dict[str, str] = {}
        for n in self.nodes:
            roles.setdefault(n.domain, n.role)
        for r in self.rows:
            roles.setdefault(r.domain, r.domain_role)
        order = {role: i for i, role in enumerate(ROLE_ORDER)}
        return dict(sorted(roles.items(), key=lambda kv: order[kv[1]]))

    def domains(self, role: str | None = None) -> list[str]:
        """Domain names (of ``role`` if given), merged domains first."""
        return [d for d, r in self.domain_roles().items() if role is None or r == role]

    def model_kinds(self) -> dict[str, str]:
        """Every model label with its kind, in table order: θ0, FedAvg, individual models
        (in domain order), merges (in the order of :attr:`merges`, then of the rows)."""
        kinds: dict[str, str] = {}
        sources: dict[str, str] = {}
        for r in self.rows:
            kinds.setdefault(r.model, r.kind)
            if r.source:
                sources.setdefault(r.model, r.source)
        domain_pos = {d: i for i, d in enumerate(self.domains())}
        merge_pos = {str(m.get("label")): i for i, m in enumerate(self.merges)}
        appearance = {m: i for i, m in enumerate(kinds)}

        def key(model: str) -> tuple[int, int, int]:
            kind = kinds[model]
            if kind == "individual":
                second = domain_pos.get(sources.get(model, ""), len(domain_pos))
            elif kind == "merge":
                second = merge_pos.get(model, len(merge_pos))
            else:
                second = 0
            return (KIND_ORDER.index(kind), second, appearance[model])

        return {m: kinds[m] for m in sorted(kinds, key=key)}

    def models(self, kind: str | None = None) -> list[str]:
        """Model labels (of ``kind`` if given) in table order."""
        return [m for m, k in self.model_kinds().items() if kind is None or k == kind]

    def base_model(self) -> str | None:
        """The label of θ0's rows (``theta0``), or None when θ0 was not evaluated."""
        bases = self.models("base")
        if BASE_LABEL in bases:
            return BASE_LABEL
        return bases[0] if bases else None

    def individual_models(self) -> dict[str, str]:
        """Source domain -> label of its individual model, in domain order."""
        out: dict[str, str] = {}
        for r in self.rows:
            if r.kind == "individual" and r.source:
                out.setdefault(r.source, r.model)
        pos = {d: i for i, d in enumerate(self.domains())}
        return dict(sorted(out.items(), key=lambda kv: pos.get(kv[0], len(pos))))

    def splits(self) -> list[str]:
        """Splits present in the rows, valid before test."""
        present = {r.split for r in self.rows}
        return [s for s in SPLIT_ORDER if s in present]

    def metric_names(self) -> list[str]:
        """Every metric key present in any row, in column order (see :func:`metric_sort_key`)."""
        names = {k for r in self.rows for k in r.metrics}
        return sorted(names, key=metric_sort_key)

    def value(self, model: str, domain: str, split: str, metric: str) -> float | None:
        """One metric value, or None when that row or metric is missing."""
        for r in self.rows:
            if r.model == model and r.domain == domain and r.split == split:
                return r.metrics.get(metric)
        return None

    def node(self, domain: str) -> NodeRecord | None:
        """The node record of ``domain``, if any."""
        for n in self.nodes:
            if n.domain == domain:
                return n
        return None

    # -- frames ----------------------------------------------------------------

    def tidy_frame(self) -> pd.DataFrame:
        """One row per model x domain x split: the identifying columns
        (:data:`ID_COLUMNS`) then one column per metric. Sorted by model (table order),
        domain, split. A metric a row lacks is NaN. This is ``results.csv``."""
        metrics = self.metric_names()
        model_pos = {m: i for i, m in enumerate(self.models())}
        domain_pos = {d: i for i, d in enumerate(self.domains())}
        split_pos = {s: i for i, s in enumerate(SPLIT_ORDER)}
        rows = sorted(
            self.rows,
            key=lambda r: (model_pos[r.model], domain_pos[r.domain], split_pos[r.split]),
        )
        records = [
            {
                "run_id": self.run_id,
                "scenario": self.scenario_name,
                "model": r.model,
                "kind": r.kind,
                "source": r.source,
                "domain": r.domain,
                "domain_role": r.domain_role,
                "split": r.split,
                "n_users": r.n_users,
                **{m: r.metrics.get(m, math.nan) for m in metrics},
            }
            for r in rows
        ]
        frame = pd.DataFrame.from_records(records, columns=[*ID_COLUMNS, *metrics])
        for col in metrics:
            frame[col] = frame[col].astype("float64")
        frame["n_users"] = frame["n_users"].astype("int64")
        return frame

    def table(
        self,
        split: str = "test",
        metric: str = "recall@10",
        *,
        models: Iterable[str] | None = None,
        means: bool = True,
    ) -> pd.DataFrame:
        """Models x domains for one split and metric (NaN where missing).

        Columns: the merged domains, the unseen domains, then ``mean (merged)`` and
        ``mean (unseen)`` (each only when the run has domains of that role, and only
        with ``means``). A mean is taken over the domains of that role that have at
        least one value in the table (a failed node's domain is left out for every
        model alike); a model missing any of those domains gets NaN, so that means are
        only ever compared over the same domains.
        """
        model_list = list(models) if models is not None else self.models()
        merged, unseen = self.domains("merged"), self.domains("unseen")
        domains = merged + unseen
        index = {(r.model, r.domain): r for r in self.rows if r.split == split}

        def get(model: str, domain: str) -> float | None:
            row = index.get((model, domain))
            return None if row is None else row.metrics.get(metric)

        data = {d: [get(m, d) for m in model_list] for d in domains}
        frame = pd.DataFrame(data, index=pd.Index(model_list, name="model"), columns=domains)
        frame = frame.astype("float64")
        if means:
            for name, cols in ((MEAN_MERGED, merged), (MEAN_UNSEEN, unseen)):
                if not cols:
                    continue
                present = [c for c in cols if frame[c].notna().any()]
                if present:
                    frame[name] = frame[present].mean(axis=1, skipna=False)
                else:
                    frame[name] = math.nan
        frame.columns.name = "domain"
        return frame

    def cross_domain_matrix(self, split: str = "test", metric: str = "recall@10") -> pd.DataFrame:
        """Individual models (rows, indexed by source domain) x evaluated domains."""
        individuals = self.individual_models()
        frame = self.table(split, metric, models=list(individuals.values()), means=False)
        frame.index = pd.Index(list(individuals), name="source")
        return frame
