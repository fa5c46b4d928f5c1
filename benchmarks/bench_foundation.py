"""Foundation benchmark: engine overhead and the node's hot loops, side by side.

Prints, from one run of this script:
- wall time of a scenario (default: the built-in quickstart) in-process
  (`silorec run`) and through Flower simulation (`silorec simulate`, i.e. `flwr run .`
  on Ray), and their ratio;
- local training throughput (training sequences per second, as measured by the
  fine-tuning loop on each domain, and in a standalone measurement);
- evaluation throughput (users ranked against the full catalogue per second).

Both engines start from the same warm data/embedding cache (prepared before timing),
so the difference is the engine: Ray start-up, process isolation, serialisation.

    python benchmarks/bench_foundation.py [SCENARIO] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.engine.simulation import simulate
from silorec.evaluation.protocol import evaluate, evaluation_users
from silorec.models import build_model
from silorec.node import DomainNode
from silorec.results import load_run
from silorec.scenario import load_scenario_with_text
from silorec.training.finetune import fine_tune

ROOT = Path(__file__).resolve().parents[1]


def warm_caches(scenario_ref: str | None) -> list[DomainNode]:
    """Prepare every domain and embed its items once, so timed runs hit the cache."""
    scenario, _, source = load_scenario_with_text(scenario_ref, [ROOT])
    base_dir = Path(source).parent if Path(source).is_file() else ROOT
    nodes = [DomainNode(scenario, d, base_dir=base_dir) for d in scenario.domains]
    for node in nodes:
        node.describe()
    return nodes


def timed(label: str, action) -> tuple[float, Path]:  # noqa: ANN001
    print(f"\n### {label}", flush=True)
    started = time.perf_counter()
    run_dir = action()
    return time.perf_counter() - started, run_dir


def node_throughput(run_dir: Path) -> dict[str, float]:
    """Training sequences/s per merged domain, as the nodes measured it."""
    results = load_run(run_dir)
    return {
        n.domain: float(n.info["sequences_per_second"])
        for n in results.nodes
        if "sequences_per_second" in n.info
    }


def standalone_throughput(node: DomainNode, epochs: int = 2) -> tuple[float, float]:
    """(training sequences/s, evaluation users/s) on one prepared domain."""
    scenario = node.scenario
    model = build_model(scenario.model, node.item_embeddings.shape[1], seed=0).to(node.device)
    text = torch.from_numpy(node.item_embeddings).to(node.device)
    report = fine_tune(model, node.prepared.domain, text, scenario.train, scenario.evaluation,
                       epochs=epochs, early_stopping=False, label="benchmark")  # fmt: skip
    users = evaluation_users(node.prepared.domain, None, 0)
    started = time.perf_counter()
    evaluate(model, node.prepared.domain, text, "test", scenario.evaluation, users)
    eval_rate = len(users) / (time.perf_counter() - started)
    return report.sequences_per_second, eval_rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=None)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    print(f"torch threads: {torch.get_num_threads()}, device: "
          f"{'cuda' if torch.cuda.is_available() else 'cpu'}")  # fmt: skip
    nodes = warm_caches(args.scenario)
    project = find_project(ROOT)
    out = Path(tempfile.mkdtemp(prefix="silorec-bench-"))
    inprocess_s, inprocess_dir = timed(
        "in-process (silorec run)",
        lambda: run_inprocess(args.scenario, project, out=out / "inprocess"),
    )
    flower_s, flower_dir = timed(
        "Flower simulation (silorec simulate -> flwr run .)",
        lambda: simulate(args.scenario, project, out=out / "simulation",
                         flwr_home=out / "flwr-home"),
    )  # fmt: skip
    train_rate, eval_rate = standalone_throughput(nodes[0])
    figures = {
        "scenario": args.scenario or "builtin:quickstart",
        "inprocess_wall_s": inprocess_s,
        "flower_simulation_wall_s": flower_s,
        "flower_over_inprocess": flower_s / inprocess_s,
        "train_sequences_per_s_inprocess": node_throughput(inprocess_dir),
        "train_sequences_per_s_simulation": node_throughput(flower_dir),
        "standalone_domain": nodes[0].name,
        "standalone_train_sequences_per_s": train_rate,
        "standalone_eval_users_per_s": eval_rate,
        "eval_catalogue_items": nodes[0].prepared.domain.n_items,
    }
    print("\n## silorec foundation benchmark")
    print(f"{'':38s}{'in-process':>14s}{'flwr run':>14s}{'ratio':>8s}")
    print(f"{'wall time of the scenario (s)':38s}{inprocess_s:14.1f}{flower_s:14.1f}"
          f"{flower_s / inprocess_s:8.2f}")  # fmt: skip
    for domain, rate in figures["train_sequences_per_s_inprocess"].items():
        other = figures["train_sequences_per_s_simulation"].get(domain, float("nan"))
        print(f"{'train sequences/s, ' + domain:38s}{rate:14.0f}{other:14.0f}{other / rate:8.2f}")
    print(f"\nstandalone on '{nodes[0].name}' ({figures['eval_catalogue_items']} items):")
    print(f"  local training throughput  {train_rate:10.0f} sequences/s")
    print(f"  evaluation throughput      {eval_rate:10.0f} users/s (full ranking)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
