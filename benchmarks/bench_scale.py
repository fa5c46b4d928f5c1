"""How silorec's cost grows with the number of domains.

For each N, a scenario of N tiny synthetic domains (one of them unseen; shared latent
world, per-domain seeds; 120 users, 60 items, 2 epochs, hashing text encoder, two
merges) runs in a child process (``silorec run``, or ``silorec simulate`` with
``--engine simulation``), and the script prints per N: wall time, time per phase
(from results.json), peak RSS of the child (server and nodes share it in-process),
bytes sent to and received from the nodes, the number of evaluations (model x domain)
and the size of results.json; then the growth exponent of each against N, fitted on
log-log over the Ns measured (and between the two largest).

    python benchmarks/bench_scale.py --n 4 16 64               # the linear evaluation plan
    python benchmarks/bench_scale.py --n 4 16 --full-matrix    # every model on every node

``--full-matrix`` sets ``evaluation.cross_domain_models`` to all (the N² plan) and
raises the nodes' ``max-evaluate-models`` floor to allow it, for a side-by-side.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from silorec.scenario.synth import synth_scenario, write_synth


def write_scenario(folder: Path, n: int, full_matrix: bool) -> Path:
    """``silorec scenario synth``'s small scenario: N domains of 120 users, 60 items."""
    scenario = synth_scenario(n, users=(120, 120), items=(60, 60), name=f"scale-{n}")
    if full_matrix:
        scenario["evaluation"] = {**scenario.get("evaluation", {}), "cross_domain_models": 10**6,
                                  "unseen_source_models": 10**6}  # fmt: skip
    return write_synth(folder / f"scale-{n}.toml", scenario)


def run_one(scenario: Path, out: Path, engine: str, full_matrix: bool) -> dict[str, float]:
    command = [sys.executable, "-m", "silorec.cli", "run" if engine == "inprocess" else "simulate",
               str(scenario), "--out", str(out)]  # fmt: skip
    if full_matrix:
        command += ["--node-config", "max-evaluate-models=100000"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{scenario.name}: exit {done.returncode}: {done.stderr[-3000:]}")
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    results = json.loads((out / "results.json").read_text())
    figures = {"wall_s": wall, "peak_rss_mb": peak / 1024.0}
    for phase, seconds in results["timings"].items():
        figures[f"{phase}_s"] = float(seconds)
    figures["sent_mb"] = sum(n["bytes_sent"] for n in results["nodes"]) / 1e6
    figures["received_mb"] = sum(n["bytes_received"] for n in results["nodes"]) / 1e6
    figures["evaluations"] = len({(r["model"], r["domain"]) for r in results["rows"]})
    figures["results_mb"] = (out / "results.json").stat().st_size / 1e6
    figures["status_ok"] = float(results["status"] == "completed")
    figures["failures"] = float(len(results["failures"]))  # a refusing node, a timeout
    return figures


def exponent(ns: list[int], values: list[float]) -> float:
    """Slope of log(value) on log(N) (least squares)."""
    x, y = np.log(ns), np.log(np.maximum(values, 1e-9))
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--engine", choices=["inprocess", "simulation"], default="inprocess")
    parser.add_argument("--full-matrix", action="store_true")
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: dict[int, dict[str, float]] = {}
    for n in sorted(args.n):
        scenario = write_scenario(work, n, args.full_matrix)
        out = work / f"run-{n}{'-full' if args.full_matrix else ''}"
        print(f"N = {n}: running ({args.engine}) ...", file=sys.stderr, flush=True)
        rows[n] = run_one(scenario, out, args.engine, args.full_matrix)
        print(f"N = {n}: {rows[n]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    columns = [c for c in ["wall_s", "connect_s", "describe_s", "base_s", "fine-tune_s", "merge_s",
                           "evaluate_s", "write_s", "peak_rss_mb", "sent_mb", "received_mb",
                           "evaluations", "results_mb", "failures"]
               if all(c in r for r in rows.values())]  # fmt: skip
    plan = "full matrix" if args.full_matrix else "evaluation plan (default)"
    lines = [f"{args.engine}, {plan}, {os.cpu_count()} CPU cores", "",
             "| N | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]  # fmt: skip
    for n, r in rows.items():
        lines.append(f"| {n} | " + " | ".join(f"{r[c]:.1f}" if r[c] < 1e4 else f"{r[c]:.0f}"
                                              for c in columns) + " |")  # fmt: skip
    ns = list(rows)
    if len(ns) >= 2:
        fit = [exponent(ns, [rows[n][c] for n in ns]) for c in columns]
        lines.append("| exponent (all N) | " + " | ".join(
            "—" if c == "failures" else f"{e:.2f}" for c, e in zip(columns, fit, strict=True)
        ) + " |")  # fmt: skip
        top = ns[-2:]
        last = [
            math.log(max(rows[top[1]][c], 1e-9) / max(rows[top[0]][c], 1e-9))
            / math.log(top[1] / top[0])
            for c in columns
        ]
        lines.append(
            f"| exponent ({top[0]}→{top[1]}) | "
            + " | ".join(
                "—" if c == "failures" else f"{e:.2f}" for c, e in zip(columns, last, strict=True)
            )
            + " |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(r["status_ok"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
