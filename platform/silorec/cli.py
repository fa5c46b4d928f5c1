"""The ``silorec`` command line.

``silorec run``       a scenario in this process (the same apps, no Ray, no network)
``silorec simulate``  a scenario through Flower's simulation engine (``flwr run .``)
``silorec scenario``  check, show or generate (``synth``) scenario files
``silorec data``      dataset statistics and preparation (node side)
``silorec node``      a data owner's check of its domain node before it joins
``silorec summary``   summarise runs of one scenario over seeds (mean, std, paired tests)
``silorec report``    re-render report.md and plots from a run's results.json
``silorec audit``     audit what left each domain node in a run (PASS/FAIL)
``silorec export``    one model of a run as a self-contained folder (with its merge card)
``silorec recommend`` recommend with an exported model, from any catalogue with item text
``silorec serve``     an exported model behind an HTTP API
``silorec card``      (re)write a run's merge card
``silorec replay``    recompute a run's merges from its stored inputs, bit for bit
``silorec merge``     a domain leaves or joins: re-merge, evaluate on the nodes

Exit codes: 0 success, 1 the run failed (its run directory says why), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# Offline by default: nothing silorec runs may reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from silorec.engine import remerge as remerge_cli  # noqa: E402
from silorec.provenance import cli as provenance_cli  # noqa: E402 - after the offline defaults
from silorec.serving import cli as serving_cli  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _error(message: str) -> None:
    print(f"silorec: error: {message}", file=sys.stderr)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        nargs="?",
        default=None,
        help="scenario file, or builtin:NAME (default: the built-in quickstart)",
    )
    parser.add_argument("--out", type=Path, help="exact run directory (must be empty)")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="parent of new run directories (default: ./runs)",
    )
    parser.add_argument(
        "--project", type=Path, help="the Flower app project (default: nearest with pyproject.toml)"
    )
    parser.add_argument(
        "--node-config",
        default="",
        metavar="'KEY=VALUE ...'",
        help="the node config of every simulated node, Flower's syntax, e.g. "
        "'max-epochs=5 allow-item-text=true': the nodes' own privacy floor "
        "(max-epsilon, max-epochs, allow-item-text, max-evaluate-requests, "
        "max-evaluate-models, min-users), which the scenario cannot loosen",
    )


def _print_summary(run_dir: Path) -> None:
    from silorec.results import MEAN_MERGED, load_run

    results = load_run(run_dir)
    table = results.table("test", "recall@10")
    print(f"\nTest Recall@10 ({results.status}):")
    print(table.to_string(float_format=lambda v: f"{v:.4f}", na_rep="—"))
    if MEAN_MERGED in table:
        print(f"\n(mean over merged domains in column '{MEAN_MERGED}')")
    print(f"\nreport: {run_dir / 'report.md'}")


def _report_failure(message: str, run_dir: Path | None) -> None:
    """Say why a run failed: the error, then each failure the run recorded."""
    from silorec.results import ResultsError, load_run

    _error(f"run failed: {message}")
    if run_dir is None or not (run_dir / "results.json").exists():
        return
    try:
        failures = load_run(run_dir).failures
    except ResultsError:
        return
    for failure in failures:
        where = failure.domain or (f"node {failure.node_id}" if failure.node_id else "server")
        print(f"  - {failure.phase}, {where}: {failure.reason}", file=sys.stderr)
    print(f"what was recorded: {run_dir / 'report.md'}", file=sys.stderr)


def _cmd_run(args: argparse.Namespace) -> int:
    from silorec.engine.local import RunFailed, run_inprocess
    from silorec.engine.project import find_project

    project = find_project(args.project)
    if args.seeds:
        return _run_seeds(args, project)
    try:
        run_dir = run_inprocess(
            args.scenario, project, out=args.out, out_parent=args.runs_dir,
            node_config=args.node_config,
        )  # fmt: skip
    except RunFailed as exc:
        _report_failure(str(exc), exc.run_dir)
        return EXIT_FAILED
    _print_summary(run_dir)
    return EXIT_OK


def _run_seeds(args: argparse.Namespace, project, engine: str = "inprocess") -> int:  # noqa: ANN001
    """One run per seed in ``<out>/seed-<s>/``, then ``summary.md/json/csv`` in ``<out>``.
    A seed replaces the scenario's seeds on the server and on every node."""
    from silorec.engine.local import RunFailed, run_inprocess
    from silorec.engine.simulation import SimulationError, simulate
    from silorec.results import load_run, new_run_dir
    from silorec.results.seeds import write_summary
    from silorec.scenario import load_scenario

    scenario = load_scenario(args.scenario, [project.root])
    folder = (
        args.out.resolve() if args.out else new_run_dir(args.runs_dir, f"{scenario.name}-seeds")
    )
    runs, failed = [], False
    for seed in args.seeds:
        out = folder / f"seed-{seed}"
        try:
            if engine == "simulation":
                run_dir = simulate(
                    args.scenario, project, out=out, flwr_home=args.flwr_home,
                    cpus_per_node=args.cpus_per_node, node_config=args.node_config, seed=seed,
                    gpus_per_node=args.gpus_per_node, ray_address=args.ray_address,
                )  # fmt: skip
            else:
                run_dir = run_inprocess(args.scenario, project, out=out, seed=seed,
                                        node_config=args.node_config)  # fmt: skip
        except (RunFailed, SimulationError) as exc:
            _report_failure(f"seed {seed}: {exc}", exc.run_dir)
            failed = True
            continue
        runs.append(load_run(run_dir))
    if runs:
        for path in write_summary(runs, folder):
            print(path)
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_summary(args: argparse.Namespace) -> int:
    from silorec.results import load_run
    from silorec.results.seeds import write_summary

    for path in write_summary([load_run(d) for d in args.run_dirs], args.out):
        print(path)
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    from silorec.engine.project import find_project
    from silorec.engine.simulation import SimulationError, simulate

    project = find_project(args.project)
    if args.seeds:
        return _run_seeds(args, project, engine="simulation")
    try:
        run_dir = simulate(
            args.scenario,
            project,
            out=args.out,
            out_parent=args.runs_dir,
            flwr_home=args.flwr_home,
            cpus_per_node=args.cpus_per_node,
            node_config=args.node_config,
            gpus_per_node=args.gpus_per_node,
            ray_address=args.ray_address,
        )
    except SimulationError as exc:
        _report_failure(str(exc), exc.run_dir)
        return EXIT_FAILED
    _print_summary(run_dir)
    return EXIT_OK


def _cmd_scenario_check(args: argparse.Namespace) -> int:
    from silorec.scenario import load_scenario

    for ref in args.files:
        scenario = load_scenario(ref)
        roles = ", ".join(f"{d.name}{' (unseen)' if d.unseen else ''}" for d in scenario.domains)
        print(f"{ref}: ok: scenario '{scenario.name}', {len(scenario.domains)} domains: {roles}")
    return EXIT_OK


def _cmd_scenario_synth(args: argparse.Namespace) -> int:
    import tomllib

    from pydantic import ValidationError

    from silorec.scenario import ScenarioError
    from silorec.scenario.synth import synth_scenario, write_synth

    base = None
    if args.base is not None:
        if not args.base.is_file():
            raise FileNotFoundError(f"{args.base}: no such scenario file")
        try:
            base = {k: v for k, v in tomllib.loads(args.base.read_text()).items() if k != "domains"}
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{args.base}: not valid TOML: {exc}") from None
    try:
        scenario = synth_scenario(
            args.domains, unseen=args.unseen, users=tuple(args.users), items=tuple(args.items),
            lengths=tuple(args.lengths), seed=args.seed, base=base, name=args.name,
        )  # fmt: skip
    except ValidationError as exc:
        raise ScenarioError(f"{args.out}: the generated scenario is not valid: {exc}") from None
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    write_synth(args.out, scenario)
    print(f"{args.out}: {args.domains} synthetic domains ({args.unseen} unseen)")
    return EXIT_OK


def _cmd_scenario_show(args: argparse.Namespace) -> int:
    from silorec.scenario import builtin_scenario_text

    print(builtin_scenario_text(args.name), end="")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from silorec.results import load_run, write_run

    results = load_run(args.run_dir)
    for path in write_run(results, args.run_dir, plots=not args.no_plots):
        print(path)
    return EXIT_OK


def _cmd_audit(args: argparse.Namespace) -> int:
    from silorec.audit import AuditLogError, audit_run, write_report
    from silorec.node.replay import local_scanners  # the detectors need the domains' data

    if not args.run_dir.is_dir():
        _error(f"{args.run_dir}: no such run directory")
        return EXIT_BAD_INPUT
    try:
        report = audit_run(args.run_dir, args.node_logs, scanners=local_scanners)
    except AuditLogError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    paths = write_report(report)
    if (args.run_dir / "merge-card.json").is_file():  # the card shows the audit's verdict
        from silorec.provenance import write_card

        write_card(args.run_dir)
    fails = [f for f in report.findings if f.severity == "fail"]
    print(
        f"audit {'PASS' if report.passed else 'FAIL'}: {len(report.nodes)} node(s), "
        f"{len(fails)} failure(s), {len(report.findings) - len(fails)} warning(s)"
    )
    for finding in fails:
        print(f"  - {finding.check}, {finding.where}: {finding.message}")
    print(f"report: {paths[0]}")
    return EXIT_OK if report.passed else EXIT_FAILED


def _cmd_node_check(args: argparse.Namespace) -> int:
    """A dry run of this node on its own data folder: statistics, then every reply it
    would send (no values) as its wire guard judged it; exit 1 if one would not go."""
    from silorec.engine.dry_run import dry_run_node
    from silorec.engine.project import find_project
    from silorec.node.check import check_target, domain_statistics, format_report, passed

    project = find_project(args.project)
    target = check_target(args.data, args.domain, args.scenario)
    prepared = domain_statistics(target)
    run = dry_run_node(target, project)
    print(format_report(target, prepared, run.replies, run.failure))
    return EXIT_OK if passed(run.replies, run.failure) else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``silorec`` command."""
    from silorec import __version__
    from silorec.data import cli as data_cli

    parser = argparse.ArgumentParser(
        prog="silorec",
        description="Data-isolated cross-domain sequential recommendation: domain nodes "
        "train where their data lives, ship only weights, and a merge server merges them.",
    )
    parser.add_argument("--version", action="version", version=f"silorec {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario in this process (no Ray)")
    _add_run_arguments(run)
    run.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="run once per seed (in OUT/seed-<s>/) and summarise mean ± std and paired "
        "tests over seeds in OUT/summary.md",
    )
    run.set_defaults(func=_cmd_run)

    simulate = commands.add_parser(
        "simulate", help="run a scenario through Flower simulation (`flwr run .`)"
    )
    _add_run_arguments(simulate)
    simulate.add_argument(
        "--flwr-home", type=Path, help="FLWR_HOME for this run (default: a fresh temp folder)"
    )
    simulate.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="one `flwr run` per seed (in OUT/seed-<s>/), summarised in OUT/summary.md",
    )
    simulate.add_argument(
        "--cpus-per-node",
        type=float,
        help="Ray CPUs per simulated node (default: the scenario's simulation.cpus_per_node, "
        "else Flower's 2: one node at a time on 2 cores)",
    )
    simulate.add_argument(
        "--gpus-per-node",
        type=float,
        help="Ray GPUs per simulated node, fractions allowed (default: the scenario's "
        "simulation.gpus_per_node, 0)",
    )
    simulate.add_argument(
        "--ray-address",
        metavar="HOST:PORT",
        help="run the nodes on this running Ray cluster (`ray start --head`) instead of a "
        "Ray instance of the run's own (default: $RAY_ADDRESS)",
    )
    simulate.set_defaults(func=_cmd_simulate)

    scenario = commands.add_parser("scenario", help="check or show scenario files")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", required=True)
    check = scenario_commands.add_parser("check", help="validate scenario files")
    check.add_argument("files", nargs="+", help="scenario files (or builtin:NAME)")
    check.set_defaults(func=_cmd_scenario_check)
    show = scenario_commands.add_parser("show", help="print a built-in scenario")
    show.add_argument("name", nargs="?", default="quickstart")
    show.set_defaults(func=_cmd_scenario_show)
    synth = scenario_commands.add_parser(
        "synth", help="write a scenario of N synthetic domains (scale studies)"
    )
    synth.add_argument("--domains", type=int, required=True, metavar="N")
    synth.add_argument("--unseen", type=int, default=1, help="how many of them are unseen (1)")
    synth.add_argument("--users", type=int, nargs=2, default=[120, 120], metavar=("MIN", "MAX"),
                       help="users per domain, drawn log-uniformly (default 120 120)")  # fmt: skip
    synth.add_argument("--items", type=int, nargs=2, default=[60, 60], metavar=("MIN", "MAX"),
                       help="items per domain (default 60 60)")  # fmt: skip
    synth.add_argument("--lengths", type=float, nargs=2, default=[8.0, 8.0],
                       metavar=("MIN", "MAX"), help="mean sequence length (default 8 8)")  # fmt: skip
    synth.add_argument("--seed", type=int, default=0, help="seed of the draws")
    synth.add_argument("--base", type=Path, metavar="FILE",
                       help="take every other setting from this scenario (default: a small, "
                       "fast one)")  # fmt: skip
    synth.add_argument("--name", help="the scenario's name (default synth-N)")
    synth.add_argument("--out", type=Path, required=True, metavar="FILE")
    synth.set_defaults(func=_cmd_scenario_synth)

    data_cli.register(commands)

    node = commands.add_parser("node", help="a domain node's own tools (data owner side)")
    node_commands = node.add_subparsers(dest="node_command", metavar="COMMAND", required=True)
    node_check = node_commands.add_parser(
        "check", help="check a domain folder; show exactly what this node would send"
    )
    node_check.add_argument("--data", type=Path, required=True, metavar="DIR",
                            help="the domain's data folder (the node's data-dir)")  # fmt: skip
    node_check.add_argument("--domain", required=True, metavar="NAME",
                            help="the domain the node serves (its node-config domain)")  # fmt: skip
    node_check.add_argument(
        "--scenario", metavar="FILE",
        help="the federation's scenario (default: silorec's defaults, generic format)",
    )  # fmt: skip
    node_check.add_argument(
        "--project", type=Path, help="the Flower app project (default: nearest with pyproject.toml)"
    )
    node_check.set_defaults(func=_cmd_node_check)

    summary = commands.add_parser("summary", help="summarise runs of one scenario over seeds")
    summary.add_argument("run_dirs", type=Path, nargs="+")
    summary.add_argument("--out", type=Path, required=True, help="folder for summary.*")
    summary.set_defaults(func=_cmd_summary)

    report = commands.add_parser("report", help="re-render report.md and plots of a run")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--no-plots", action="store_true")
    report.set_defaults(func=_cmd_report)

    audit = commands.add_parser(
        "audit", help="audit what left each domain node in a run; exit 1 on FAIL"
    )
    audit.add_argument("run_dir", type=Path)
    audit.add_argument(
        "--node-logs",
        type=Path,
        nargs="+",
        default=[],
        metavar="DIR_OR_FILE",
        help="node audit logs collected elsewhere (deployment), instead of RUN_DIR/audit/",
    )
    audit.set_defaults(func=_cmd_audit)

    serving_cli.register(commands)
    provenance_cli.register(commands)
    remerge_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn input errors into one clear line."""
    from silorec.data.errors import DataError
    from silorec.engine.project import ProjectError
    from silorec.node import NodeConfigError
    from silorec.provenance import CardError, MergeInputsError
    from silorec.provenance.membership import MembershipError
    from silorec.results import ResultsError
    from silorec.scenario import ScenarioError
    from silorec.serving import ExportError, RecommendError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (
        ScenarioError, DataError, ProjectError, ResultsError, NodeConfigError, FileExistsError,
        FileNotFoundError, CardError, MergeInputsError, MembershipError, ExportError, RecommendError,
    ) as exc:  # fmt: skip
        _error(str(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
