"""Try merge configurations on the saved models of a finished run, without retraining.

A run that saved its models (``[output] save_models = true``) holds θ0 and every
individual model in ``models/``. This script merges them again with each variant of a
TOML file, evaluates every merge on every domain of the run (validation and test,
the run's own evaluation protocol and users) and prints the mean Recall@10 over the
merged domains, each unseen domain's, the merge's wall time and any learned λ.
Choose on the validation column; the test column is for reporting.

It is an experimenter's tool run where the data is (it builds each domain node to
evaluate): a study of merge settings costs seconds per variant instead of a run.

    SILOREC_AMAZON_DIR=../shared/datasets/amazon-mergerec \\
        python benchmarks/remerge.py runs/amazon-seed-0 benchmarks/remerge_variants.toml

A variants file has one table per variant: ``[name]`` with ``method`` and the merge's
parameters in scenario spelling (``lambda``, ``granularity``, ``reencode_items`` ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from silorec.merging.base import MergeContext
from silorec.merging.registry import get_method, merge
from silorec.models import build_model, catalogue_inputs
from silorec.node import DomainNode
from silorec.node.floor import NodeFloor
from silorec.scenario import load_scenario

METRIC = "recall@10"


def load_models(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The run's saved models by label (θ0 and the individual models are needed)."""
    index_file = run_dir / "models" / "index.json"
    if not index_file.is_file():
        raise SystemExit(f"{index_file}: missing; the run must have output.save_models = true")
    models = {}
    for entry in json.loads(index_file.read_text(encoding="utf-8")):
        if entry["kind"] in ("base", "individual"):
            with np.load(run_dir / "models" / entry["file"]) as archive:
                models[entry["label"]] = {k: torch.from_numpy(archive[k]) for k in archive.files}
    return models


def mean_length(node: DomainNode) -> float:
    """Interactions per user, as the server reads it from the describe reply."""
    stats = node.describe()
    return stats["n_interactions"] / stats["n_users"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("variants", type=Path, help="TOML: one [name] table per variant")
    parser.add_argument("--seed", type=int, default=0, help="seed of randomised merges")
    args = parser.parse_args(argv)
    variants = tomllib.loads(args.variants.read_text(encoding="utf-8"))
    for spec in variants.values():  # fail before any work
        params = {k: v for k, v in spec.items() if k != "method"}
        get_method(spec.get("method", "")).validate_params(params)

    scenario = load_scenario(args.run_dir / "scenario.toml")
    merged = [d for d in scenario.domains if not d.unseen]
    # The experimenter evaluates their own domains here, one request per variant: a
    # floor that allows as many requests as there are variants (the default allows 3).
    floor = NodeFloor.from_node_config({"max-evaluate-requests": max(3, len(variants))})
    nodes = {d.name: DomainNode(scenario, d, base_dir=args.run_dir, floor=floor)
             for d in scenario.domains}  # fmt: skip
    models = load_models(args.run_dir)
    base = models["theta0"]
    finetuned = [models[f"individual:{d.name}"] for d in merged]
    embeddings = [nodes[d.name].item_embeddings for d in merged]
    text_dim = embeddings[0].shape[1]

    unseen = [d.name for d in scenario.domains if d.unseen]
    print(f"{'variant':40s} {'valid':>7s} {'test':>7s} "
          + "".join(f" {u + ' v/t':>15s}" for u in unseen) + "  seconds  λ")  # fmt: skip
    for name, spec in variants.items():
        params = {k: v for k, v in spec.items() if k != "method"}
        context = None
        if get_method(spec["method"]).needs_context:
            context = MergeContext(
                item_inputs=[catalogue_inputs(scenario.model, e, None) for e in embeddings],
                build_model=lambda: build_model(scenario.model, text_dim, seed=0),
                mean_lengths=[mean_length(nodes[d.name]) for d in merged],
            )
        started = time.perf_counter()
        weights = merge(spec["method"], params, base, finetuned, seed=args.seed, context=context)
        seconds = time.perf_counter() - started
        arrays = {k: v.numpy() for k, v in weights.items()}
        scores = {}
        for domain, node in nodes.items():
            result = node.evaluate({name: arrays}, ["valid", "test"])[name]
            scores[domain] = {split: result[split].metrics[METRIC] for split in result}
        mean = {s: np.mean([scores[d.name][s] for d in merged]) for s in ("valid", "test")}
        lambdas = (context.diagnostics.get("lambdas") if context else None) or ""
        if lambdas:
            lambdas = {g: [round(x, 3) for x in v] for g, v in lambdas.items()}
        print(f"{name:40s} {mean['valid']:7.4f} {mean['test']:7.4f} "
              + "".join(f" {scores[u]['valid']:7.4f}/{scores[u]['test']:.4f}" for u in unseen)
              + f"  {seconds:7.1f}  {lambdas}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
