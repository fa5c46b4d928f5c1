"""``silorec merge remove|add``: a domain leaves or joins, the others do not retrain.

The re-merge itself is the merge server's (:func:`silorec.provenance.membership.remerge`,
from the run's stored inputs). Then, unless ``--engine none``, one federation round
evaluates the new merges on the scenario's nodes, in this process or in Flower
simulation: the server trains nothing (run config ``evaluate-from``), sends the
models to every node, and writes the re-merged run with its rows, audit logs and
merge card, like any run. A domain that left is evaluated as unseen.

    silorec merge remove runs/tiny-... --domain gamma
    silorec merge add runs/tiny-...-without-gamma --domain gamma --from runs/tiny-...
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from silorec.logs import get_logger

log = get_logger("engine")

ENGINES = ("inprocess", "simulation", "none")


class RemergeFailed(RuntimeError):
    """The evaluation round failed; the re-merged (unevaluated) run is kept."""

    def __init__(self, message: str, kept: Path | None) -> None:
        super().__init__(message)
        self.kept = kept


def remerge_and_evaluate(
    run_dir: Path,
    out_dir: Path,
    *,
    remove: Sequence[str] = (),
    add: Sequence[str] = (),
    source_run: Path | None = None,
    engine: str = "inprocess",
    scenario: str | Path | None = None,
    project_dir: Path | None = None,
) -> Path:
    """Re-merge ``run_dir`` without ``remove`` / with ``add`` into ``out_dir`` and, unless
    ``engine`` is ``"none"``, evaluate the new merges on the nodes; returns ``out_dir``.

    ``scenario``: the scenario file the nodes run (default: the run's own copy); give
    the original file when its data paths are relative to where it lives."""
    from silorec.engine.project import find_project
    from silorec.provenance.membership import remerge

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: exists; choose a new folder for the re-merged run")
    if engine == "none":
        remerge(run_dir, out_dir, remove=remove, add=add, source_run=source_run)
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.merged.", dir=out_dir.parent))
    merged = remerge(
        run_dir, staging / "run", remove=remove, add=add, source_run=source_run
    ).run_dir
    scenario_ref = str(scenario) if scenario is not None else str(merged / "scenario.toml")
    seed = _seed_override(merged, scenario_ref)
    project = find_project(project_dir)
    log.info("evaluating the re-merged models on the nodes (%s engine)", engine)
    try:
        if engine == "simulation":
            from silorec.engine.simulation import simulate

            simulate(scenario_ref, project, out=out_dir, seed=seed, evaluate_from=merged)
        else:
            from silorec.engine.local import run_inprocess

            run_inprocess(scenario_ref, project, out=out_dir, seed=seed, evaluate_from=merged)
    except Exception as exc:
        kept = out_dir.with_name(f"{out_dir.name}-unevaluated")
        if not kept.exists():
            merged.rename(kept)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            kept = merged
        raise RemergeFailed(f"the evaluation round failed: {exc}", kept) from exc
    shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _seed_override(run_dir: Path, scenario_ref: str) -> int | None:
    """The seed to pass when the run was made with ``--seeds`` (its recorded seeds
    differ from its scenario file's)."""
    from silorec.results import load_run
    from silorec.scenario import load_scenario

    recorded = load_run(run_dir).seeds
    scenario = load_scenario(scenario_ref)
    own = {"scenario": scenario.seed, "train": scenario.train.seed, "base": scenario.base.seed}
    return None if recorded == own else int(recorded["scenario"])


# -- the command ---------------------------------------------------------------------


def register(commands: Any) -> None:
    """``silorec merge remove|add``."""
    merge = commands.add_parser(
        "merge", help="re-merge a run with a domain leaving or joining (no retraining)"
    )
    actions = merge.add_subparsers(dest="merge_command", metavar="ACTION")
    actions.required = True
    for action, text in (("remove", "re-merge without these domains"),
                         ("add", "re-merge with these domains added (from --from RUN)")):  # fmt: skip
        sub = actions.add_parser(action, help=text, description=__doc__.split("\n\n")[1])
        sub.add_argument("run_dir", type=Path, metavar="RUN")
        sub.add_argument("--domain", action="append", required=True, metavar="NAME",
                         help="the domain (repeatable)")  # fmt: skip
        if action == "add":
            sub.add_argument("--from", dest="source_run", type=Path, required=True,
                             metavar="RUN", help="a run from the same θ0 that merged the "
                             "joining domain(s): their uploads are taken from it")  # fmt: skip
        sub.add_argument("--out", type=Path, metavar="DIR",
                         help="the new run folder (default: RUN-without-NAME / RUN-with-NAME)")  # fmt: skip
        sub.add_argument("--engine", choices=ENGINES, default="inprocess",
                         help="how the evaluation round runs (default: inprocess; none: "
                         "re-merge only, evaluate later)")  # fmt: skip
        sub.add_argument("--scenario", metavar="FILE",
                         help="the scenario the nodes run (default: the run's own copy)")  # fmt: skip
        sub.add_argument("--project", type=Path, help="the Flower app project")
        sub.set_defaults(func=cmd_merge, action=action)


def cmd_merge(args: argparse.Namespace) -> int:
    joined = "-".join(args.domain)
    word = "without" if args.action == "remove" else "with"
    out = args.out or args.run_dir.resolve().with_name(
        f"{args.run_dir.resolve().name}-{word}-{joined}"
    )
    try:
        run_dir = remerge_and_evaluate(
            args.run_dir, out,
            remove=args.domain if args.action == "remove" else (),
            add=args.domain if args.action == "add" else (),
            source_run=getattr(args, "source_run", None),
            engine=args.engine, scenario=args.scenario, project_dir=args.project,
        )  # fmt: skip
    except RemergeFailed as exc:
        print(f"error: {exc}; the re-merged run, not evaluated, is in {exc.kept}")
        return 1
    from silorec.results import load_run

    results = load_run(run_dir)
    order = results.derived_from["merge_order"]
    print(f"re-merged over {', '.join(order)}: {len(results.merges)} merge(s) in {run_dir}")
    if results.derived_from.get("evaluated"):
        table = results.table("test", "recall@10")
        print(f"\nTest Recall@10, evaluated on the nodes ({results.status}):")
        print(table.to_string(float_format=lambda v: f"{v:.4f}", na_rep="—"))
        print(f"\nreport: {run_dir / 'report.md'}")
    else:
        print("  not evaluated (--engine none); export one with: "
              f"silorec export {run_dir} --model LABEL --out DIR")  # fmt: skip
    return 0
