"""WeaveRec's pooled-data oracles, added to an in-process weaving run after it ran.

Both break the isolation silorec keeps, so they run only here (this process holds
every domain) and are labelled as oracles everywhere:

- the *pooled adapter*: one adapter trained on every merged domain's pooled data;
- *pooled WeaveRec*, the released recipe: per target T and source S a hybrid adapter
  trained on the pooled T + S data, then T's own adapter (from the run) and the
  hybrids merged uniformly on ΔW.

Same base θ0, rank, layers and epoch budget as the run's adapters (``weave.
adapter_epochs`` with early stopping on the pooled domains' mean validation NDCG@10).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from silorec.logs import get_logger
from silorec.models import Weights, build_model, set_weights
from silorec.models.lora import adapter_attached, fold_adapter, init_adapter
from silorec.node import DomainNode
from silorec.provenance.merge_inputs import load_saved_model, saved_index
from silorec.results import BASE_LABEL, ResultRow, load_run, write_run
from silorec.scenario import Scenario
from silorec.training.joint import fine_tune_joint
from silorec.weaving import adapter_label

log = get_logger("silorec.oracle")

POOLED_ADAPTER_LABEL = "pooled adapter (oracle)"


def pooled_weave_label(target: str) -> str:
    return f"pooled weave:{target} (oracle)"


def add_weave_oracles(run_dir: Path, scenario: Scenario, base_dir: Path) -> None:
    """Train both oracles from the run's θ0 and add their rows and facts."""
    results = load_run(run_dir)
    if not results.weave.get("targets"):
        log.warning("weave oracles skipped: the run wove nothing")
        return
    usable = {n.domain for n in results.nodes if n.status == "ok"}
    nodes = {d.name: DomainNode(scenario, d, base_dir=base_dir) for d in scenario.domains
             if d.name in usable}  # fmt: skip
    merged = [n for n in nodes.values() if not n.spec.unseen]
    theta0 = load_saved_model(run_dir, BASE_LABEL)
    weave = scenario.weave
    settings = scenario.train.model_copy(
        update={"regime": "full", "epochs": weave.adapter_epochs or scenario.train.epochs}
    )
    text_dim = merged[0].item_embeddings.shape[1]
    model = build_model(scenario.model, text_dim, seed=0)
    start = init_adapter(model, weave.rank, weave.layers, seed=scenario.seed)
    facts: dict[str, Any] = {"breaks_isolation": True, "seconds": {}}

    def pooled(domains: list[DomainNode], name: str) -> Weights:
        started = time.perf_counter()
        log.info("weave oracle %s: pooled data of %s (breaks isolation)", name,
                 ", ".join(n.name for n in domains))  # fmt: skip
        set_weights(model, theta0)
        model.to(domains[0].device)
        with adapter_attached(model, start, weave.alpha, weave.layers) as current:
            fine_tune_joint(model, [n.prepared.domain for n in domains],
                            [torch.from_numpy(n.item_embeddings).to(n.device) for n in domains],
                            settings, scenario.evaluation)  # fmt: skip
            adapter = current()
        model.to("cpu")
        facts["seconds"][name] = round(time.perf_counter() - started, 2)
        return fold_adapter(theta0, adapter, weave.alpha)

    models: dict[str, Weights] = {POOLED_ADAPTER_LABEL: pooled(merged, POOLED_ADAPTER_LABEL)}
    for target, target_facts in results.weave["targets"].items():
        own_label = adapter_label(target)
        if target not in nodes or own_label not in {e["label"] for e in saved_index(run_dir)}:
            continue
        parts = [load_saved_model(run_dir, own_label)]
        for source in target_facts["sources"]:
            if source in nodes:
                parts.append(pooled([nodes[target], nodes[source]], f"{target}+{source}"))
        label = pooled_weave_label(target)
        models[label] = {k: np.mean([p[k] for p in parts], axis=0).astype(np.float32)
                         for k in theta0}  # fmt: skip
        target_facts["pooled_weave"] = label
    roles = {n.domain: n.role for n in results.nodes}
    for node in nodes.values():
        for label, by_split in node.evaluate(models, scenario.evaluation.splits).items():
            for split, result in by_split.items():
                results.rows.append(ResultRow(model=label, kind="oracle", domain=node.name,
                                              domain_role=roles[node.name], split=split,
                                              n_users=result.n_users, metrics=result.metrics))  # fmt: skip
    results.weave["pooled_adapter"] = POOLED_ADAPTER_LABEL
    results.weave["oracles"] = facts
    write_run(results, run_dir, plots=scenario.output.plots)
    log.info("weave oracles added to %s", run_dir)
