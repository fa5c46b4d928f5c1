"""Fine-tuning memory on a large catalogue: one synthetic domain with many items.

Each measurement runs in a fresh child process (peak RSS is per process): prepare
the domain, build its node (item texts embedded), fine-tune one epoch of the text-seq
model from a seeded θ0. Printed: items, training sequences, seconds, and peak RSS
with the chunked full-softmax loss (``LOGITS_BUDGET``, the default) and, side by side,
with the loss in one piece (the budget lifted), i.e. before chunking existed.

    python benchmarks/bench_big_catalogue.py --items 100000 --users 5000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """name = "big-catalogue"
seed = 0

[text]
encoder = "hashing"
hashing_dim = 64

[model]
dim = 32
layers = 1
heads = 2
max_len = 20

[train]
epochs = 1
batch_size = 128
progress = false
max_valid_users = 200

[[merges]]
method = "average"

[[domains]]
name = "big"
data = {{ kind = "synthetic", world_seed = 1, n_users = {users}, n_items = {items}, seed = 1 }}

[[domains]]
name = "small"
data = {{ kind = "synthetic", world_seed = 1, n_users = 200, n_items = 60, seed = 2 }}
"""


def child(scenario_path: str, budget: int) -> None:
    """Run in the child: print one JSON line of figures."""
    import silorec.training.finetune as finetune
    from silorec.models import build_model, get_weights
    from silorec.node.domain_node import DomainNode
    from silorec.scenario import load_scenario

    finetune.LOGITS_BUDGET = budget
    scenario = load_scenario(scenario_path)
    start = time.perf_counter()
    node = DomainNode(scenario, scenario.domain("big"), base_dir=Path(scenario_path).parent)
    prepared = time.perf_counter() - start
    weights = get_weights(build_model(scenario.model, node.item_embeddings.shape[1], seed=0))
    start = time.perf_counter()
    outcome = node.train(weights, epochs=1, early_stopping=False, label="bench",
                         ledger_dir=Path(tempfile.mkdtemp()), run="bench")  # fmt: skip
    print(json.dumps({
        "items": int(node.item_embeddings.shape[0]),
        "train_sequences": int(outcome.metrics.get("n_train_sequences", 0)),
        "prepare_s": prepared, "train_s": time.perf_counter() - start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def measure(scenario: Path, budget: int) -> dict:
    env = {**os.environ, "SILOREC_CACHE_DIR": str(scenario.parent / "cache")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(scenario), str(budget)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from silorec.training.finetune import LOGITS_BUDGET

    folder = Path(tempfile.mkdtemp(prefix="bench-big-"))
    scenario = folder / "big.toml"
    scenario.write_text(SCENARIO.format(items=args.items, users=args.users))
    rows = {"chunked (default)": measure(scenario, LOGITS_BUDGET),
            "one piece (budget lifted)": measure(scenario, 1 << 62)}  # fmt: skip
    lines = [f"One synthetic domain, {args.items:,} items, {args.users:,} users; text-seq "
             f"(dim 32, max_len 20), batch 128, one epoch; {os.cpu_count()} CPU cores.", "",
             "| loss | items | training sequences | prepare s | train s | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        lines.append(f"| {name} | {r['items']:,} | {r['train_sequences']:,} | "
                     f"{r['prepare_s']:.1f} | {r['train_s']:.1f} | {r['peak_rss_mb']:.0f} |")  # fmt: skip
    chunked = rows["chunked (default)"]["peak_rss_mb"]
    lines += [
        "",
        f"peak RSS under 2 GiB: {'PASS' if chunked < 2048 else 'MISS'} ({chunked:.0f} MB)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if chunked < 2048 else 1


if __name__ == "__main__":
    sys.exit(main())
