"""The Joint oracle, added to an in-process run's results after the federation ran.

It trains one model on the merged domains' pooled training data, which breaks the
isolation silorec exists to keep: it is an upper reference, run only here (this
process holds every domain) and labelled as an oracle in every table.
"""

from __future__ import annotations

from pathlib import Path

import torch

from silorec.logs import get_logger
from silorec.models import build_model, get_weights, set_weights
from silorec.node import DomainNode
from silorec.provenance.merge_inputs import load_saved_model
from silorec.results import BASE_LABEL, ResultRow, load_run, write_run
from silorec.scenario import Scenario
from silorec.training.joint import fine_tune_joint

log = get_logger("silorec.oracle")

JOINT_LABEL = "joint (oracle)"


def add_joint_oracle(run_dir: Path, scenario: Scenario, base_dir: Path) -> None:
    """Train the Joint oracle from the run's θ0 and add its rows to the results."""
    results = load_run(run_dir)
    usable = {n.domain for n in results.nodes if n.status == "ok"}
    nodes = [DomainNode(scenario, d, base_dir=base_dir) for d in scenario.domains
             if d.name in usable]  # fmt: skip
    merged = [n for n in nodes if not n.spec.unseen]
    if not merged:
        log.warning("joint oracle skipped: no merged domain is usable")
        return
    log.info("joint oracle: training on pooled data of %s (breaks isolation)",
             ", ".join(n.name for n in merged))  # fmt: skip
    theta0 = load_saved_model(run_dir, BASE_LABEL)
    model = build_model(scenario.model, merged[0].item_embeddings.shape[1], seed=0)
    set_weights(model, theta0)
    model.to(merged[0].device)
    report = fine_tune_joint(
        model,
        [n.prepared.domain for n in merged],
        [torch.from_numpy(n.item_embeddings).to(n.device) for n in merged],
        scenario.train,
        scenario.evaluation,
    )
    weights = get_weights(model)
    roles = {n.domain: n.role for n in results.nodes}
    for node in nodes:
        for split, result in node.evaluate({JOINT_LABEL: weights}, scenario.evaluation.splits)[
            JOINT_LABEL
        ].items():
            results.rows.append(ResultRow(model=JOINT_LABEL, kind="oracle", domain=node.name,
                                          domain_role=roles[node.name], split=split,
                                          n_users=result.n_users, metrics=result.metrics))  # fmt: skip
    results.baselines["joint"] = {
        "domains": [n.name for n in merged],
        "epochs_run": report.epochs_run,
        "best_epoch": report.best_epoch,
        "best_valid_ndcg@10": report.best_valid_ndcg10,
        "seconds": round(report.seconds, 2),
        "train_sequences": report.n_train_sequences,
        "breaks_isolation": True,
    }
    write_run(results, run_dir, plots=scenario.output.plots)
    log.info("joint oracle added to %s (%.0f s)", run_dir, report.seconds)
