"""MergeRec targets on the Amazon scenario, measured over seeds.

Runs a scenario (default: scenarios/amazon.toml) once per seed in-process, writes the
seed summary, and checks the issue's targets, choosing every reference on the
validation split and reading the outcome on test:

1. the learned merge's mean test Recall@10 over the merged domains is at least 10 %
   above the best training-free merge (the one with the best validation mean);
2. it keeps at least 90 % of the individual models' mean in-domain Recall@10;
3. on each unseen domain it is at least as good as the best single source model
   (the individual model best on that domain's validation split);
4. the merge optimisation takes under 2 minutes.

    SILOREC_AMAZON_DIR=../shared/datasets/amazon-mergerec \\
        python benchmarks/bench_mergerec.py --seeds 0 1 2 --out runs/mergerec-bench

With existing runs: ``python benchmarks/bench_mergerec.py --runs DIR [DIR ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.results import MEAN_MERGED, RunResults, load_run
from silorec.results.analysis import best_training_free_merge, unseen_transfer
from silorec.results.seeds import write_summary

ROOT = Path(__file__).resolve().parents[1]


def learned_labels(run: RunResults) -> list[str]:
    return [m["label"] for m in run.merges
            if m.get("learned") or (m.get("diagnostics") or {}).get("lambdas")]  # fmt: skip


def figures(run: RunResults, learned: str) -> dict[str, float]:
    """One run's numbers for the targets."""
    test = run.table("test", "recall@10")
    reference = best_training_free_merge(run)
    individual = [test.loc[label, source] for source, label in run.individual_models().items()]
    out = {
        "learned": float(test.loc[learned, MEAN_MERGED]),
        "reference": float(test.loc[reference, MEAN_MERGED]),
        "individual": float(statistics.mean(individual)),
        "seconds": float(
            next(m["diagnostics"]["seconds"] for m in run.merges if m["label"] == learned)
        ),  # fmt: skip
    }
    for record in unseen_transfer(run, "test", "recall@10").to_dict("records"):
        out[f"unseen:{record['domain']}:learned"] = float(record[learned])
        out[f"unseen:{record['domain']}:best_source"] = float(record["best_individual"])
    return out


def check(runs: list[RunResults]) -> bool:
    """Print each target per learned merge, with means over seeds; True if all met
    for at least one learned merge."""
    print(f"\n{len(runs)} run(s); references chosen on validation, numbers on test")
    any_met = False
    for learned in learned_labels(runs[0]):
        per_seed = [figures(run, learned) for run in runs]

        def mean(key: str, rows: list[dict[str, float]] = per_seed) -> float:
            return statistics.mean(row[key] for row in rows)

        ratio_ref = mean("learned") / mean("reference")
        ratio_ind = mean("learned") / mean("individual")
        unseen = sorted({k.split(":")[1] for k in per_seed[0] if k.startswith("unseen:")})
        targets = [
            ("≥ 1.10 x best training-free merge", ratio_ref, ratio_ref >= 1.10),
            ("≥ 0.90 x individual models (in-domain)", ratio_ind, ratio_ind >= 0.90),
            *[(f"≥ best single source on {d}",
               mean(f"unseen:{d}:learned") / mean(f"unseen:{d}:best_source"),
               mean(f"unseen:{d}:learned") >= mean(f"unseen:{d}:best_source"))
              for d in unseen],
            ("merge optimisation < 120 s", mean("seconds"), mean("seconds") < 120),
        ]  # fmt: skip
        print(f"\n`{learned}`: mean test Recall@10 {mean('learned'):.4f} "
              f"(best training-free {mean('reference'):.4f}, individual {mean('individual'):.4f})")  # fmt: skip
        for name, value, met in targets:
            print(f"  {'MET ' if met else 'MISS'} {name:42s} {value:8.3f}")
        any_met |= all(met for _, _, met in targets)
    return any_met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "amazon.toml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/mergerec-bench"))
    parser.add_argument("--runs", type=Path, nargs="+", help="summarise existing runs instead")
    args = parser.parse_args(argv)
    if args.runs:
        runs = [load_run(d) for d in args.runs]
    else:
        project = find_project(ROOT)
        runs = [load_run(run_inprocess(args.scenario, project, out=args.out / f"seed-{s}", seed=s))
                for s in args.seeds]  # fmt: skip
        for path in write_summary(runs, args.out):
            print(path)
    if not learned_labels(runs[0]):
        print("no learned merge in these runs", file=sys.stderr)
        return 2
    return 0 if check(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
