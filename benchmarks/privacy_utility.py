"""Privacy–utility on the amazon scenario, and the cost of DP-SGD.

``table``: runs the shipped ``scenarios/amazon.toml`` (Beauty, Sports, Toys merged,
Pantry unseen) once per privacy setting, in-process, with membership inference on in
every run, and prints one row per setting: the ε each merged domain reached (its
ledger, at δ = 1 / its users), the noise multiplier, the mean test Recall@10 over
the merged domains of the ``average`` merge, of the best training-free merge (chosen
on validation) and of each domain's own model on its own domain, and the mean
membership-inference AUC.

Settings: ``none`` (no DP: early stopping as the scenario says, ε = ∞), ``sigma0``
(DP-SGD's clipping, Poisson sampling and fixed epochs with no noise: ε = ∞, isolates
what the noise costs) and DP-SGD at ε = 8, 4 and 1 (noise calibrated over the run).
The reference baselines (FedAvg, Joint) are left out: the table compares merges.
``--max-users``, ``--max-epochs`` (the non-private setting's cap, with early stopping)
and ``--dp-epochs`` reduce the work for 2 CPU cores; ``--dp-lr`` is the learning rate
of the DP-SGD settings (the non-private one keeps the scenario's).

``speed``: one epoch of DP-SGD and one of non-private fine-tuning on Amazon Beauty
(6,000 users, 1,996 items, the default model, 384-d MiniLM text), in training
sequences per second of wall time and per CPU-second (the second is steadier on a
shared machine).

    SILOREC_AMAZON_DIR=/path/to/amazon-mergerec python benchmarks/privacy_utility.py table \\
        --max-users 2000 --dp-epochs 4 --dp-lr 0.003 --out runs/privacy-utility
    SILOREC_AMAZON_DIR=/path/to/amazon-mergerec python benchmarks/privacy_utility.py speed
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
import torch
from scenario_edits import edited_scenario

from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.models import build_model
from silorec.node import DomainNode
from silorec.results import RunResults, load_run
from silorec.results.analysis import best_training_free_merge
from silorec.results.schema import (
    MEAN_MERGED,
    MIA_AUC,
    PRIVACY_EPSILON,
    PRIVACY_EPSILON_UNBOUNDED,
    PRIVACY_NOISE_MULTIPLIER,
)
from silorec.scenario import Scenario, parse_scenario_text
from silorec.training.dp_finetune import DpSgdParams, dp_fine_tune
from silorec.training.finetune import fine_tune

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT / "scenarios" / "amazon.toml"

#: Setting name -> (its [privacy] table, whether it trains with DP-SGD's schedule).
SETTINGS: dict[str, tuple[dict[str, Any], bool]] = {
    "none": ({"membership_inference": True}, False),
    "sigma0": ({"mechanism": "dp-sgd", "noise_multiplier": 0.0, "membership_inference": True},
               True),
    **{
        f"eps{eps:g}": (
            {"mechanism": "dp-sgd", "target_epsilon": eps, "membership_inference": True},
            True,
        )
        for eps in (8.0, 4.0, 1.0)
    },
}  # fmt: skip

#: The table compares merges; the reference baselines would only add releases (every
#: FedAvg round is one) to each domain's ledger, and the Joint oracle cannot be private.
NO_BASELINES = {"fedavg_rounds": 0, "joint": False}


def variant_text(
    base: str,
    privacy: dict[str, Any],
    *,
    max_users: int | None,
    epochs: int | None,
    lr: float | None,
) -> str:
    """The amazon scenario without reference baselines, with a [privacy] table and,
    where given, at most ``max_users`` users per domain, at most ``epochs`` epochs
    (DP-SGD trains exactly that many) and learning rate ``lr``."""
    if "privacy" in tomllib.loads(base):
        raise SystemExit(f"{AMAZON}: already has a [privacy] table; the settings add their own")
    overrides: dict[str, Any] = {"baselines": dict(NO_BASELINES), "privacy": privacy}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    if lr is not None:
        overrides["train.lr"] = lr
    data = edited_scenario(base, overrides, max_users=max_users)
    return tomli_w.dumps(data)


def run_setting(name: str, text: str, out: Path, resume: bool) -> RunResults:
    """Run one setting (or, with ``resume``, load its finished run)."""
    run_dir = out / name
    if resume and (run_dir / "results.json").is_file():
        return load_run(run_dir)
    scenario_file = out / f"{name}.toml"
    scenario_file.write_text(text)
    parse_scenario_text(text, str(scenario_file))  # fail before running
    started = time.perf_counter()
    run_inprocess(scenario_file, find_project(ROOT), out=run_dir)
    print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
    return load_run(run_dir)


def summarise(name: str, results: RunResults) -> dict[str, float | str | None]:
    """One row of the table from a run."""
    merged = results.domains("merged")
    infos = [results.node(d).info for d in merged if results.node(d) is not None]
    unbounded = any(i.get(PRIVACY_EPSILON_UNBOUNDED) for i in infos)
    epsilons = [i[PRIVACY_EPSILON] for i in infos if PRIVACY_EPSILON in i]
    best = best_training_free_merge(results)
    test = results.table("test", "recall@10")

    def mean_merged(model: str | None) -> float | None:
        if model is None or model not in test.index:
            return None
        value = float(test.at[model, MEAN_MERGED])
        return None if math.isnan(value) else value

    own_domain = [results.value(m, d, "test", "recall@10")
                  for d, m in results.individual_models().items()]  # fmt: skip
    return {
        "setting": name,
        "epsilon": math.inf if unbounded else (max(epsilons) if epsilons else None),
        "noise_multiplier": _mean([i.get(PRIVACY_NOISE_MULTIPLIER) for i in infos]),
        "theta0": mean_merged(results.base_model()),
        "average": mean_merged("average"),
        "best_merge": best,
        "best_merge_recall": mean_merged(best),
        "individual": _mean(own_domain),
        "mia_auc": _mean([i.get(MIA_AUC) for i in infos]),
        "train_seconds": _mean([i.get("train_seconds") for i in infos]),
        "epochs": _mean([i.get("epochs_run") for i in infos]),
    }


def _mean(values: list[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def markdown_table(rows: list[dict]) -> str:
    """The table as Markdown (missing values as —)."""

    def num(value: float | None, digits: int = 4) -> str:
        if value is None:
            return "—"
        return "∞" if math.isinf(value) else f"{value:.{digits}f}"

    header = ("| setting | ε (max over domains) | noise multiplier | epochs | θ0 | average "
              "| best training-free merge | individual (own domain) | MIA AUC | train time / domain |")  # fmt: skip
    lines = [header, "| :--- | ---: | ---: | ---: | ---: | ---: | :--- | ---: | ---: | ---: |"]
    for r in rows:
        best = (
            "—"
            if r["best_merge"] is None
            else f"{num(r['best_merge_recall'])} (`{r['best_merge']}`)"
        )
        lines.append(
            f"| {r['setting']} | {num(r['epsilon'], 2)} | {num(r['noise_multiplier'], 3)} "
            f"| {num(r['epochs'], 1)} | {num(r['theta0'])} | {num(r['average'])} | {best} "
            f"| {num(r['individual'])} | {num(r['mia_auc'], 3)} "
            f"| {num(r['train_seconds'], 0)} s |"
        )
    return "\n".join(lines)


def table(args: argparse.Namespace) -> None:
    base = AMAZON.read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.settings:
        privacy, dp = SETTINGS[name]
        epochs, lr = (args.dp_epochs, args.dp_lr) if dp else (args.max_epochs, None)
        text = variant_text(base, privacy, max_users=args.max_users, epochs=epochs, lr=lr)
        rows.append(summarise(name, run_setting(name, text, args.out, args.resume)))
        (args.out / "summary.json").write_text(json.dumps(rows, indent=2, default=str))
    print(markdown_table(rows))


def speed(args: argparse.Namespace) -> None:
    """One epoch each, DP-SGD (σ = 1, C = 1) and non-private, on Amazon Beauty."""
    torch.set_num_threads(args.threads)
    text = AMAZON.read_text().replace("max_users = 6000", f"max_users = {args.users}")
    scenario: Scenario = parse_scenario_text(text, str(AMAZON))
    node = DomainNode(scenario, scenario.domains[0], base_dir=AMAZON.parent)
    domain = node.prepared.domain
    embeddings = torch.from_numpy(node.item_embeddings)
    settings = scenario.train.model_copy(update={"progress": False})
    print(f"domain {domain.name}: {domain.n_users} users, {domain.n_items} items, text "
          f"{embeddings.shape[1]}-d, model {scenario.model.model_dump()}", flush=True)  # fmt: skip
    for label in ("non-private", "dp-sgd"):
        model = build_model(scenario.model, embeddings.shape[1], seed=0)
        wall, cpu = time.perf_counter(), time.process_time()
        if label == "dp-sgd":
            report = dp_fine_tune(model, domain, embeddings, settings, DpSgdParams(1.0, 1.0),
                                  epochs=1)  # fmt: skip
        else:
            report = fine_tune(model, domain, embeddings, settings, scenario.evaluation,
                               epochs=1, early_stopping=False)  # fmt: skip
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        n = report.n_train_sequences
        print(f"{label}: {n} sequences in {wall:.1f} s wall ({n / wall:.1f} seq/s), "
              f"{cpu:.1f} CPU-s ({n / cpu:.1f} seq per CPU-s)", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    table_cmd = commands.add_parser("table", help="the privacy-utility table")
    table_cmd.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    table_cmd.add_argument("--max-users", type=int, default=None, help="default: the scenario's")
    table_cmd.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="cap on the non-private setting's epochs (early stopping)",
    )
    table_cmd.add_argument("--dp-epochs", type=int, default=4)
    table_cmd.add_argument("--dp-lr", type=float, default=None)
    table_cmd.add_argument("--out", type=Path, default=ROOT / "runs" / "privacy-utility")
    table_cmd.add_argument("--resume", action="store_true", help="reuse finished runs in --out")
    speed_cmd = commands.add_parser("speed", help="DP-SGD against non-private throughput")
    speed_cmd.add_argument("--users", type=int, default=6000)
    speed_cmd.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    {"table": table, "speed": speed}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
