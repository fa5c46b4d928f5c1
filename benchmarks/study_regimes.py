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
from pathlib import Path
from typing import Any

import tomli_w
from scenario_edits import edited_scenario

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
    "identity-lora": {"base.init": "seeded", "model.init": "identity", "train.regime": "lora"},
    "identity-proximal": {
        "base.init": "seeded",
        "model.init": "identity",
        "train.regime": "proximal",
    },
}


#: Applied to every variant: the study is about merges, not the reference baselines.
COMMON = {"baselines.fedavg_rounds": 0, "baselines.joint": False}


def variant_scenario(
    base: Path, name: str, overrides: dict[str, Any], folder: Path, max_users: int | None = None
) -> Path:
    """Write the base scenario with ``overrides`` applied as ``<folder>/<name>.toml``;
    with ``max_users``, every domain keeps at most that many users (a smaller study
    that 2 CPU cores finish in minutes per variant)."""
    text = base.read_text(encoding="utf-8")
    data = edited_scenario(text, {**COMMON, **overrides}, max_users=max_users)
    data["name"] = f"{data['name']}-{name}"
    data.setdefault("data", {}).setdefault("root", str(base.parent))  # env var still wins
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


LEARNED = ("mergerec (task-wise)", "mergerec (layer-wise)", "adamerging")


def summarise(name: str, run: RunResults) -> dict[str, Any]:
    """One variant's figures (test Recall@10 unless named ``valid``); every choice is
    made on validation."""
    test = run.table("test", "recall@10")
    valid = run.table("valid", "recall@10")
    individual = [test.loc[label, source] for source, label in run.individual_models().items()]
    merges = run.models("merge")
    best_valid = str(valid.loc[merges, MEAN_MERGED].idxmax())
    row: dict[str, Any] = {
        "variant": name,
        "individual": sum(individual) / len(individual),
        "theta0": test.loc[run.base_model(), MEAN_MERGED],
        "reference": best_training_free_merge(run),
        "best merge (valid)": best_valid,
        "best merge valid": valid.loc[best_valid, MEAN_MERGED],
        "best merge test": test.loc[best_valid, MEAN_MERGED],
    }
    row["best training-free"] = test.loc[row["reference"], MEAN_MERGED]
    for label in LEARNED:
        row[label] = test.loc[label, MEAN_MERGED] if label in test.index else float("nan")
    for record in unseen_transfer(run, "test", "recall@10").to_dict("records"):
        domain = record["domain"]
        row[f"{domain}: θ0"] = test.loc[run.base_model(), domain]
        row[f"{domain}: best source"] = record["best_individual"]
        row[f"{domain}: mergerec (task-wise)"] = record.get("mergerec (task-wise)", float("nan"))
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    """The study as a Markdown table (the columns of :func:`summarise`)."""
    unseen = sorted({k.split(":")[0] for r in rows for k in r if k.endswith(": θ0")})
    header = ["variant", "individual (in-domain)", "θ0", "best training-free (chosen on valid)",
              *LEARNED, "best merge on valid: valid / test"]  # fmt: skip
    for domain in unseen:
        header += [f"{domain}: θ0", f"{domain}: best source", f"{domain}: mergerec (task-wise)"]
    lines = ["| " + " | ".join(header) + " |", "| :--- |" + " ---: |" * (len(header) - 1)]
    for r in rows:
        cells = [f"`{r['variant']}`", f"{r['individual']:.4f}", f"{r['theta0']:.4f}",
                 f"{r['best training-free']:.4f} (`{r['reference']}`)",
                 *(f"{r[label]:.4f}" for label in LEARNED),
                 f"`{r['best merge (valid)']}`: {r['best merge valid']:.4f} / "
                 f"{r['best merge test']:.4f}"]  # fmt: skip
        for domain in unseen:
            cells += [f"{r[f'{domain}: θ0']:.4f}", f"{r[f'{domain}: best source']:.4f}",
                      f"{r[f'{domain}: mergerec (task-wise)']:.4f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    print("\nmean Recall@10 over the merged domains (test unless marked), unseen domains "
          "per column; every reference is chosen on validation\n")  # fmt: skip
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
