"""In which regime does merging work? Variants of the Amazon scenario, side by side.

Each variant overrides a few scenario keys (the base θ0, the model's initialisation,
the local fine-tuning regime) of ``scenarios/amazon.toml`` and runs in-process with
one seed. The table compares, on the merged domains' mean test Recall@10: the
individual models in-domain, θ0, the best training-free merge (chosen on
validation), each learned merge; and on each unseen domain the best single source
(chosen on validation) against each learned merge.

    SILOREC_AMAZON_DIR=../shared/datasets/amazon-mergerec \\
        python benchmarks/study_regimes.py --out runs/study [--variants NAME ...]

Existing variant runs in ``--out`` are reused (delete one to rerun it).
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.results import MEAN_MERGED, RunResults, load_run
from silorec.results.analysis import best_training_free_merge, unseen_transfer

ROOT = Path(__file__).resolve().parents[1]

#: name -> overrides ({"section.key": value}); the study's variants.
VARIANTS: dict[str, dict[str, Any]] = {
    "seeded": {"base.init": "seeded"},
    "fedavg": {"base.init": "fedavg"},
    "identity": {"base.init": "seeded", "model.init": "identity"},
    "identity-fedavg": {"base.init": "fedavg", "model.init": "identity"},
    "fedavg-lora": {"base.init": "fedavg", "train.regime": "lora"},
    "fedavg-proximal": {"base.init": "fedavg", "train.regime": "proximal"},
}


#: Applied to every variant: the study is about merges, not the reference baselines.
COMMON = {"baselines.fedavg_rounds": 0, "baselines.joint": False}


def variant_scenario(
    base: Path, name: str, overrides: dict[str, Any], folder: Path, max_users: int | None = None
) -> Path:
    """Write the base scenario with ``overrides`` applied as ``<folder>/<name>.toml``;
    with ``max_users``, every domain keeps at most that many users (a smaller study
    that 2 CPU cores finish in minutes per variant)."""
    data = tomllib.loads(base.read_text(encoding="utf-8"))
    data["name"] = f"{data['name']}-{name}"
    for dotted, value in {**COMMON, **overrides}.items():
        section, key = dotted.split(".")
        data.setdefault(section, {})[key] = value
    if max_users is not None:
        for domain in data.get("domains", []):
            domain.setdefault("subsample", {})["max_users"] = max_users
    data.setdefault("data", {}).setdefault("root", str(base.parent))  # env var still wins
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def summarise(name: str, run: RunResults) -> dict[str, Any]:
    test = run.table("test", "recall@10")
    individual = [test.loc[label, source] for source, label in run.individual_models().items()]
    reference = best_training_free_merge(run)
    row: dict[str, Any] = {
        "variant": name,
        "individual": sum(individual) / len(individual),
        "theta0": test.loc[run.base_model(), MEAN_MERGED],
        "best training-free": test.loc[reference, MEAN_MERGED] if reference else float("nan"),
        "reference": reference,
    }
    unseen = unseen_transfer(run, "test", "recall@10")
    for merge in run.merges:
        if (merge.get("diagnostics") or {}).get("lambdas"):
            label = merge["label"]
            row[label] = test.loc[label, MEAN_MERGED]
            row[f"{label} s"] = merge["diagnostics"]["seconds"]
            for record in unseen.to_dict("records"):
                row[f"{label} on {record['domain']}"] = record[label]
    for record in unseen.to_dict("records"):
        row[f"best source on {record['domain']}"] = record["best_individual"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "amazon.toml")
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-users", type=int, default=None, help="cap every domain's users (default: as is)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    project = find_project(ROOT)
    rows = []
    for name in args.variants:
        run_dir = args.out / name
        if not (run_dir / "results.json").exists():
            scenario = variant_scenario(
                args.scenario, name, VARIANTS[name], args.out, args.max_users
            )
            print(f"\n### variant {name}: {VARIANTS[name]}", flush=True)
            run_dir = run_inprocess(scenario, project, out=run_dir, seed=args.seed)
        rows.append(summarise(name, load_run(run_dir)))
    print("\nmean test Recall@10 over merged domains (references chosen on validation)")
    for row in rows:
        print(f"\n{row['variant']}: individual {row['individual']:.4f}, θ0 {row['theta0']:.4f}, "
              f"best training-free {row['best training-free']:.4f} ({row['reference']})")  # fmt: skip
        for key, value in row.items():
            if key not in {"variant", "individual", "theta0", "best training-free", "reference"}:
                print(
                    f"  {key:60s} {value:.4f}" if isinstance(value, float) else f"  {key}: {value}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
