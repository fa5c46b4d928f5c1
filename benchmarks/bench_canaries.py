"""What the audit's canary users cost the model: the same scenario with
``[audit] canaries = 0`` and with the default (4 per domain), over seeds, in-process.

Canaries are synthetic users planted in each domain's training data (their histories
must never appear in anything a node sends). They are trained on like any user, so
they could move the model; this prints the mean test Recall@10 over merged domains
of every model, with and without them, per seed and on average, and the largest
difference.

    python benchmarks/bench_canaries.py [--scenario builtin:quickstart] [--seeds 0 1 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.results import MEAN_MERGED, load_run
from silorec.scenario import load_scenario_with_text


def _with_canaries(source: str, text: str, canaries: int, folder: Path) -> Path:
    """The scenario's TOML with ``[audit] canaries`` set (appended or replaced)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("canaries")]
    body = "\n".join(lines)
    if "[audit]" in body:
        body = body.replace("[audit]", f"[audit]\ncanaries = {canaries}", 1)
    else:
        body += f"\n\n[audit]\ncanaries = {canaries}\n"
    path = folder / f"canaries-{canaries}.toml"
    path.write_text(body)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="builtin:quickstart")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--canaries", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    project = find_project(Path(__file__).resolve().parents[1])
    _, text, source = load_scenario_with_text(args.scenario, [project.root])
    out = args.out or Path(tempfile.mkdtemp(prefix="silorec-canaries-"))
    out.mkdir(parents=True, exist_ok=True)
    scenarios = {n: _with_canaries(source, text, n, out) for n in (0, args.canaries)}
    tables = {}
    for seed in args.seeds:
        for n, scenario in scenarios.items():
            run = run_inprocess(scenario, project, out=out / f"c{n}-s{seed}", seed=seed)
            tables[(n, seed)] = load_run(run).table("test", "recall@10")[MEAN_MERGED]
    models = list(tables[(0, args.seeds[0])].index)
    print(f"test Recall@10, mean over merged domains; canaries 0 vs {args.canaries}, "
          f"seeds {args.seeds}")  # fmt: skip
    print(f"{'model':58s} {'without':>8s} {'with':>8s} {'diff':>8s}")
    worst = 0.0
    for model in models:
        without = sum(tables[(0, s)][model] for s in args.seeds) / len(args.seeds)
        with_ = sum(tables[(args.canaries, s)][model] for s in args.seeds) / len(args.seeds)
        worst = max(worst, abs(with_ - without))
        print(f"{model:58s} {without:8.4f} {with_:8.4f} {with_ - without:+8.4f}")
    print(f"largest |difference| of a mean over seeds: {worst:.4f}")
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
