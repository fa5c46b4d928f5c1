"""The scalar metrics each reply kind may carry: an allow-list of names, bounded in
count.

Scalars are a channel too: a reply with 10,000 metric keys, each holding one float
item id, carries a whole interaction log. So the node's wire policy
(:mod:`silorec.audit.policy`) allows only these names, and the merge server's
validator (:mod:`silorec.wire.replies`) rejects any other. Evaluate metrics are
``<split>/<metric>`` with the scenario's metric names; paired sums are
``<split>/<metric>/<i>/<j>/<statistic>`` for model indices of the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from silorec.evaluation.metrics import SAMPLED_METRICS, metric_names
from silorec.evaluation.paired import PAIRED_METRICS
from silorec.results.schema import (
    MIA_AUC,
    MIA_MEMBERS,
    MIA_NON_MEMBERS,
    PRIVACY_DELTA,
    PRIVACY_EPSILON,
    PRIVACY_EPSILON_UNBOUNDED,
    PRIVACY_NOISE_MULTIPLIER,
    PRIVACY_RELEASES,
)
from silorec.wire import protocol

#: A domain's privacy ledger, as any reply that reports it carries it.
LEDGER_METRICS = frozenset(
    {PRIVACY_DELTA, PRIVACY_RELEASES, PRIVACY_EPSILON, PRIVACY_EPSILON_UNBOUNDED}
)

#: Describe: the domain's sizes (and, for an unseen domain, its ledger).
DESCRIBE_METRICS = (
    frozenset(
        {
            "n_users",
            "n_items",
            "n_interactions",
            "n_evaluable_users",
            "raw_users",
            "raw_items",
            "raw_interactions",
            "text_dim",
            "preparation_seconds",
        }
    )
    | LEDGER_METRICS
)

#: Describe metrics every describe reply must carry.
DESCRIBE_REQUIRED = ("n_users", "n_items", "text_dim")

#: Train: the training report, the release's noise and ledger, the membership audit.
TRAIN_METRICS = (
    frozenset(
        {
            "epochs_run",
            "best_epoch",
            "train_seconds",
            "eval_seconds",
            "n_train_sequences",
            "sequences_per_second",
            "best_valid_ndcg@10",
            "final_train_loss",
            "train_seed",
            PRIVACY_NOISE_MULTIPLIER,
            MIA_AUC,
            MIA_MEMBERS,
            MIA_NON_MEMBERS,
        }
    )
    | LEDGER_METRICS
)

#: Train metrics every train reply must carry (FedAvg weighs by it).
TRAIN_REQUIRED = ("n_train_sequences",)

#: Evaluate: per split, the number of users and the ranking metrics.
EVALUATE_COUNT = "n_users"

#: The most model indices a paired key may name (the node's floor caps the models per
#: evaluate request at or under this; see silorec.node.floor).
MAX_PAIR_MODELS = 1024

SPLITS = ("valid", "test")

_PAIR_KEY = re.compile(
    r"^(?P<split>[a-z]+)/(?P<metric>[a-z0-9@._]+)/(?P<i>\d{1,4})/(?P<j>\d{1,4})/(?P<stat>[a-z]+)$"
)


def evaluate_metric_names(ks: Iterable[int]) -> frozenset[str]:
    """``<split>/<metric>`` keys an evaluate result record may hold."""
    names = [*metric_names(ks), *SAMPLED_METRICS, EVALUATE_COUNT]
    return frozenset(
        f"{split}{protocol.SPLIT_SEPARATOR}{name}" for split in SPLITS for name in names
    )


def is_pair_key(key: str, n_models: int | None = None) -> bool:
    """Whether ``key`` names a paired statistic of two distinct models (``i < j``, both
    under ``n_models`` when known) on a known split, metric and statistic."""
    match = _PAIR_KEY.match(key)
    if match is None:
        return False
    i, j = int(match["i"]), int(match["j"])
    limit = MAX_PAIR_MODELS if n_models is None else n_models
    return (
        match["split"] in SPLITS
        and match["metric"] in PAIRED_METRICS
        and match["stat"] in protocol.PAIR_STATS
        and 0 <= i < j < limit
    )


def reference_pairs(labels: Sequence[str], refs: Sequence[str] | None) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of an evaluate request's ``labels`` that a node
    sums: those with at least one of the request's references (every pair when the
    request names none, as servers before the evaluation plan did)."""
    wanted = None if refs is None else set(refs)
    return [
        (i, j)
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
        if wanted is None or labels[i] in wanted or labels[j] in wanted
    ]


def pair_key_limit(n_models: int) -> int:
    """The most paired keys a reply about ``n_models`` models can hold."""
    pairs = n_models * (n_models - 1) // 2
    return len(SPLITS) * len(PAIRED_METRICS) * pairs * len(protocol.PAIR_STATS)
