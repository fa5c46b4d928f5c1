"""``silorec run``: a scenario through the in-process engine, with the project's own
ServerApp and ClientApp (the ones ``flwr run .`` would use)."""

from __future__ import annotations

from pathlib import Path

from silorec.apps.run_config import (
    ENGINE,
    EVALUATE_FROM,
    INPROCESS_ENGINE,
    NODE_BINDING,
    OUT_DIR,
    RUN_DIR,
    SCENARIO,
    SEED,
    STATE_RECORD,
    STATE_RUN_DIR,
    binding_text,
)
from silorec.data.prepare import resolve_source
from silorec.engine.inprocess import FIRST_NODE_ID, ServerAppFailed, run_apps, state_value
from silorec.engine.oracle import add_joint_oracle
from silorec.engine.project import FlowerProject
from silorec.engine.weave_oracle import add_weave_oracles
from silorec.node.floor import NodeFloor, parse_node_config
from silorec.results import new_run_dir
from silorec.scenario import Scenario, load_scenario_with_text


def run_inprocess(
    scenario_ref: str | Path | None,
    project: FlowerProject,
    *,
    out: Path | None = None,
    out_parent: Path | None = None,
    seed: int | None = None,
    node_config: str = "",
    evaluate_from: Path | None = None,
) -> Path:
    """Run a scenario in this process; returns its run directory.

    The scenario is validated, and every domain's data found, before anything runs
    (here all nodes live in this process, so a missing dataset is the user's to fix
    now, not a node failure to record). ``out`` is the exact run
    directory (must be empty or absent); otherwise a new one is made under
    ``out_parent`` (default ``runs/`` in the working directory). ``seed`` replaces the
    scenario's seeds (see ``Scenario.with_seed``). ``node_config`` is every node's
    node config (Flower's ``key=value`` syntax: the nodes' floor, see
    :mod:`silorec.node.floor`). The server is told which node holds which domain
    (:data:`~silorec.apps.run_config.NODE_BINDING`), as a deployment's scenario does
    with ``federation.node_ids``. ``evaluate_from``: a re-merged run (``silorec merge
    add|remove``) whose models this run only evaluates on the nodes.
    """
    scenario, _, source = load_scenario_with_text(scenario_ref, [project.root])
    if seed is not None:
        scenario = scenario.with_seed(seed)
    base_dir = Path(source).parent if Path(source).is_file() else project.root
    check_data_sources(scenario, base_dir)
    # Made here rather than by the server so that the nodes, in this process too, know
    # it: their audit logs go to its audit/ folder.
    exact_dir = (
        out.resolve() if out else new_run_dir((out_parent or Path("runs")).resolve(), scenario.name)
    )
    run_config = {
        **project.run_config,
        SCENARIO: source,
        ENGINE: INPROCESS_ENGINE,
        RUN_DIR: str(exact_dir),
        OUT_DIR: str(exact_dir.parent),
        SEED: -1 if seed is None else seed,
        EVALUATE_FROM: str(evaluate_from.resolve()) if evaluate_from else "",
    }
    shared = parse_node_config(node_config)
    NodeFloor.from_node_config(shared)  # a bad floor is the user's to fix now
    n_nodes = len(scenario.domains)
    run_config[NODE_BINDING] = binding_text(
        {d.name: FIRST_NODE_ID + i for i, d in enumerate(scenario.domains)}
    )
    try:
        context = run_apps(
            project.load(project.serverapp),
            project.load(project.clientapp),
            num_nodes=n_nodes,
            run_config=run_config,
            node_configs=[
                {**shared, "partition-id": i, "num-partitions": n_nodes} for i in range(n_nodes)
            ],
        )
    except ServerAppFailed as failed:
        run_dir = state_value(failed.context, STATE_RECORD, STATE_RUN_DIR)
        raise RunFailed(str(failed.error), Path(run_dir) if run_dir else None) from failed.error
    run_dir = state_value(context, STATE_RECORD, STATE_RUN_DIR)
    if run_dir is None:
        raise RunFailed("the ServerApp finished without reporting a run directory", None)
    if evaluate_from is not None:
        return Path(str(run_dir))
    if scenario.baselines.joint:
        add_joint_oracle(Path(str(run_dir)), scenario, base_dir)
    if scenario.weave.enabled and scenario.weave.pooled_oracles:
        add_weave_oracles(Path(str(run_dir)), scenario, base_dir)
    return Path(str(run_dir))


class RunFailed(RuntimeError):
    """A run that did not complete; ``run_dir`` holds what it recorded, if anything."""

    def __init__(self, message: str, run_dir: Path | None) -> None:
        super().__init__(message)
        self.run_dir = run_dir


def check_data_sources(scenario: Scenario, base_dir: Path) -> None:
    """Raise the data layer's own clear error (which says how to get the data) if a
    domain's input files are missing."""
    for domain in scenario.domains:
        resolve_source(domain, scenario.data, base_dir=base_dir)
