"""ClientApp handlers: one domain node. Records in, :class:`DomainNode` work, records out.

The node learns its scenario from the run config (the same file the server uses,
shipped inside the Flower app bundle) and its domain from its node config. Prepared
data stays cached in this process between messages of a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from silorec.apps.node_dirs import node_log_dir
from silorec.apps.records import metrics_record, record_to_weights, weights_to_record
from silorec.apps.run_config import scenario_from_run_config
from silorec.evaluation.metrics import per_user_metrics
from silorec.evaluation.paired import PAIRED_METRICS, PairedSums
from silorec.evaluation.protocol import EvalResult
from silorec.logs import get_logger
from silorec.node import DomainNode, assign_domain
from silorec.node.floor import NodeFloor, merged_node_config
from silorec.wire import protocol
from silorec.wire.metrics import reference_pairs

log = get_logger("silorec.node")

#: Prepared nodes kept per process (simulation reuses worker processes across runs).
#: Nodes kept per process, at least: a process that serves several nodes (the
#: in-process engine, a Ray actor in simulation) keeps every node of the scenario, up
#: to its domain count, so that no node is rebuilt (its data prepared, its item texts
#: embedded again) between rounds.
_MIN_CACHED_NODES = 8
_nodes: OrderedDict[str, DomainNode] = OrderedDict()


def node_for(context: Context, app_dir: Path) -> DomainNode:
    """The :class:`DomainNode` this ClientApp serves, prepared once per process, with
    the floor of its own node config (see :mod:`silorec.node.floor`)."""
    scenario, text, source = scenario_from_run_config(context.run_config, app_dir)
    assignment = assign_domain(scenario, context.node_config)
    floor = node_floor(context)
    # The seeds are in the key: a seed replaces the scenario's (run config ``seed``),
    # and a node kept from a run with another seed must not train with its seed.
    seeds = [scenario.seed, scenario.train.seed, scenario.base.seed]
    key = hashlib.sha256(
        "\0".join(
            [text, source, assignment.domain.name, str(assignment.data_dir),
             json.dumps(floor.describe(), sort_keys=True), json.dumps(seeds)]
        ).encode()
    ).hexdigest()  # fmt: skip
    node = _nodes.get(key)
    if node is None:
        base_dir = Path(source).parent if Path(source).is_file() else app_dir
        node = DomainNode(
            scenario,
            assignment.domain,
            data_dir=assignment.data_dir,
            base_dir=base_dir,
            floor=floor,
        )
        _nodes[key] = node
        while len(_nodes) > max(_MIN_CACHED_NODES, len(scenario.domains)):
            _nodes.popitem(last=False)
    _nodes.move_to_end(key)
    return node


def node_floor(context: Context) -> NodeFloor:
    """The floor this node sets for itself: its node config, over the simulated nodes'
    shared one from the environment (never from the run config: that is the
    server's)."""
    return NodeFloor.from_node_config(merged_node_config(context.node_config, os.environ))


def describe(message: Message, context: Context, app_dir: Path) -> Message:
    """Prepare the domain (import, subsample, embed item texts) and report sizes. An
    unseen domain also reports its privacy ledger (it never uploads, so this is its
    only chance to say its ε)."""
    node = node_for(context, app_dir)
    log.info("node %s: preparing domain '%s'", context.node_id, node.name)
    stats = node.describe()
    if node.spec.unseen:
        stats.update(node.privacy_report(ledger_dir(context)))
    info = ConfigRecord({"domain": node.name, "unseen": node.spec.unseen})
    log.info(
        "node %s: domain '%s' ready: %d users, %d items (%.1f s)",
        context.node_id,
        node.name,
        stats["n_users"],
        stats["n_items"],
        stats["preparation_seconds"],
    )
    content = RecordDict({protocol.INFO: info, protocol.METRICS: metrics_record(stats)})
    return Message(content, reply_to=message)


def train(message: Message, context: Context, app_dir: Path) -> Message:
    """Fine-tune from the received weights; reply with weights, item embeddings,
    scalar metrics and, where the scenario needs them on the server, the catalogue's
    item texts. An unseen domain refuses: it must never upload anything."""
    node = node_for(context, app_dir)
    if node.spec.unseen:
        raise PermissionError(f"domain '{node.name}' is unseen: it does not train or upload")
    config = message.content[protocol.CONFIG]
    phase = str(config[protocol.PHASE])
    epochs = int(config[protocol.EPOCHS]) or None
    weights = record_to_weights(message.content[protocol.WEIGHTS])
    adapter = None
    if protocol.ADAPTER in message.content.array_records:
        adapter = record_to_weights(message.content[protocol.ADAPTER])
    log.info("node %s: %s on domain '%s'", context.node_id, phase, node.name)
    outcome = node.train(
        weights,
        epochs=epochs,
        early_stopping=bool(config[protocol.EARLY_STOPPING]),
        label=message.metadata.group_id or phase,
        ledger_dir=ledger_dir(context),
        run=str(context.run_id),
        adapter=adapter,
    )
    metrics = outcome.metrics
    log.info(
        "node %s: %s on '%s' done: %d epochs, best valid NDCG@10 %s, %.1f s",
        context.node_id,
        phase,
        node.name,
        outcome.report.epochs_run,
        _fmt(outcome.report.best_valid_ndcg10),
        outcome.report.train_seconds,
    )
    if outcome.adapter:  # weaving: the adapter alone goes back
        content = RecordDict(
            {
                protocol.INFO: ConfigRecord({"domain": node.name}),
                protocol.ADAPTER: weights_to_record(outcome.weights),
                protocol.METRICS: metrics_record(metrics),
            }
        )
        return Message(content, reply_to=message)
    content = RecordDict(
        {
            protocol.INFO: ConfigRecord({"domain": node.name}),
            protocol.WEIGHTS: weights_to_record(outcome.weights),
            protocol.METRICS: metrics_record(metrics),
        }
    )
    held = str(config[protocol.CATALOGUE_SHA256]) if protocol.CATALOGUE_SHA256 in config else ""
    if held != protocol.catalogue_sha256(outcome.item_embeddings):  # once per run
        content[protocol.ITEM_EMBEDDINGS] = ArrayRecord(
            {protocol.ITEM_EMBEDDINGS_ARRAY: Array(outcome.item_embeddings)}
        )
    if outcome.item_texts is not None:
        content[protocol.ITEM_TEXTS] = ConfigRecord({protocol.ITEM_TEXTS_KEY: outcome.item_texts})
    return Message(content, reply_to=message)


def evaluate(message: Message, context: Context, app_dir: Path) -> Message:
    """Evaluate every received model on this domain; reply with metrics only."""
    node = node_for(context, app_dir)
    splits = list(message.content[protocol.CONFIG][protocol.SPLITS])
    models = {
        key.removeprefix(protocol.MODEL_PREFIX): record_to_weights(record)
        for key, record in message.content.array_records.items()
        if key.startswith(protocol.MODEL_PREFIX)
    }
    log.info("node %s: evaluating %d models on '%s'", context.node_id, len(models), node.name)
    results = node.evaluate(models, splits, run=str(context.run_id))
    content = RecordDict({protocol.INFO: ConfigRecord({"domain": node.name})})
    for label, by_split in results.items():
        values: dict[str, float] = {}
        for split, result in by_split.items():
            prefix = f"{split}{protocol.SPLIT_SEPARATOR}"
            values[f"{prefix}n_users"] = float(result.n_users)
            values.update({f"{prefix}{name}": v for name, v in result.metrics.items()})
        content[f"{protocol.RESULT_PREFIX}{label}"] = metrics_record(values)
    config = message.content[protocol.CONFIG]
    labels = list(config[protocol.LABELS])
    refs = list(config[protocol.REFERENCES]) if protocol.REFERENCES in config else None
    content[protocol.PAIRS] = metrics_record(
        _pair_sums(results, labels, node.scenario.evaluation.ks, reference_pairs(labels, refs))
    )
    return Message(content, reply_to=message)


def _pair_sums(
    results: dict[str, dict[str, EvalResult]],
    labels: list[str],
    ks: list[int],
    pairs: list[tuple[int, int]],
) -> dict[str, float]:
    """n, Σd, Σd² of per-user differences for each of ``pairs`` (indices into
    ``labels``), split and headline metric: aggregates only, never a per-user value."""
    out: dict[str, float] = {}
    for split in next(iter(results.values())):
        per_user = {label: per_user_metrics(results[label][split].ranks, ks) for label in labels}
        for metric in PAIRED_METRICS:
            for i, j in pairs:
                sums = PairedSums.of(per_user[labels[i]][metric], per_user[labels[j]][metric])
                for stat, value in zip(protocol.PAIR_STATS, (sums.n, sums.total, sums.total_sq),
                                       strict=True):  # fmt: skip
                    out[protocol.pair_key(split, metric, i, j, stat)] = float(value)
    return out


def ledger_dir(context: Context) -> Path:
    """Where this node keeps its privacy ledger: beside its audit log."""
    return node_log_dir(context)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
