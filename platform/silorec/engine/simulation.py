"""``silorec simulate``: a scenario through Flower's simulation engine, ``flwr run .``.

It does what a careful user would do by hand, so that the run is offline,
self-contained and checked:

- a private ``FLWR_HOME`` and a SuperLink of its own (simulation mode) on a free
  loopback port, started in its own process group and stopped by PID afterwards
  (``flwr run``'s managed SuperLink outlives it and uses fixed ports);
- the offline environment (no runtime dependency installation, no telemetry, no
  update check);
- ``num-supernodes`` = the scenario's domain count (Flower simulates 2 otherwise);
- the run's final status read back with ``flwr ls`` (``flwr run`` exits 0 even when
  the run failed).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from silorec.engine.flwr_cli import (
    FlowerCliError,
    binary,
    flower_env,
    free_port,
    run_streaming,
    stop_process_group,
    toml_string,
    wait_for_run,
    write_connection,
)
from silorec.engine.project import FlowerProject
from silorec.logs import get_logger
from silorec.node.floor import NODE_CONFIG_ENV, NodeFloor, parse_node_config
from silorec.results import new_run_dir
from silorec.scenario import Scenario, load_scenario_with_text

log = get_logger("silorec.simulate")

CONNECTION = "silorec-sim"


class SimulationError(FlowerCliError):
    """The simulation could not start, or the run did not complete."""

    def __init__(self, message: str, run_dir: Path | None = None) -> None:
        super().__init__(message)
        self.run_dir = run_dir


@dataclass(frozen=True)
class SuperLink:
    """A running SuperLink this process started."""

    process: subprocess.Popen[bytes]
    address: str
    log_file: Path


@contextmanager
def simulation_superlink(
    flwr_home: Path, env: dict[str, str], startup_timeout: float = 60.0
) -> Iterator[SuperLink]:
    """Start ``flower-superlink --simulation`` on a free port; stop it (and its process
    group: executors, the simulation and Ray) on exit."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    log_file = flwr_home / "superlink.log"
    command = [
        binary("flower-superlink"), "--insecure", "--simulation",
        "--isolation", "subprocess", "--host", "127.0.0.1", "--port", str(port),
        "--database", str(flwr_home / "state.db"), "--log-file", str(log_file),
    ]  # fmt: skip
    with open(flwr_home / "superlink.out", "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_listening(process, port, startup_timeout, log_file)
        yield SuperLink(process, address, log_file)
    finally:
        stop_process_group(process)


def _wait_until_listening(
    process: subprocess.Popen[bytes], port: int, timeout: float, log_file: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SimulationError(
                f"flower-superlink exited with code {process.returncode}; see {log_file}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise SimulationError(f"flower-superlink did not listen on port {port} within {timeout:g} s")


def federation_config(
    scenario: Scenario, cpus_per_node: float | None = None, gpus_per_node: float | None = None
) -> str:
    """``flwr run --federation-config``: one SuperNode per domain, and each node's Ray
    resources (the arguments, else the scenario's ``[simulation]``)."""
    out = f"num-supernodes={len(scenario.domains)}"
    cpus = cpus_per_node if cpus_per_node is not None else scenario.simulation.cpus_per_node
    gpus = gpus_per_node if gpus_per_node is not None else scenario.simulation.gpus_per_node
    if cpus is not None:
        out += f" client-resources-num-cpus={cpus:g}"
    if gpus:
        out += f" client-resources-num-gpus={gpus:g}"
    return out


def simulate(
    scenario_ref: str | Path | None,
    project: FlowerProject,
    *,
    out: Path | None = None,
    out_parent: Path | None = None,
    flwr_home: Path | None = None,
    cpus_per_node: float | None = None,
    timeout: float = 6 * 3600.0,
    node_config: str = "",
    seed: int | None = None,
    evaluate_from: Path | None = None,
    gpus_per_node: float | None = None,
    ray_address: str | None = None,
) -> Path:
    """Run a scenario with ``flwr run`` on a private simulation SuperLink; returns the
    run directory once the run has completed, else raises :class:`SimulationError`.

    ``node_config``: every simulated node's node config (its floor, see
    :mod:`silorec.node.floor`), handed to the nodes through the environment of the
    SuperLink that starts them (Flower simulation has no per-node config of its own).
    ``seed`` replaces the scenario's seeds on the server and on every node (the run
    config's ``seed``). ``evaluate_from``: a re-merged run whose models this run only
    evaluates on the nodes (the run config's ``evaluate-from``). ``cpus_per_node`` /
    ``gpus_per_node`` override the scenario's ``[simulation]`` resources.
    ``ray_address``: a running Ray cluster (``ray start --head``) to run the nodes on
    instead of a Ray instance of the run's own (also taken from ``$RAY_ADDRESS``)."""
    scenario, _, source = load_scenario_with_text(scenario_ref, [project.root])
    NodeFloor.from_node_config(parse_node_config(node_config))  # a bad one fails now
    if out is not None:
        run_dir = out.resolve()
        if run_dir.exists() and any(run_dir.iterdir()):
            raise SimulationError(f"run directory {run_dir} is not empty; choose another")
    else:
        run_dir = new_run_dir((out_parent or Path("runs")).resolve(), scenario.name)
    home = (flwr_home or Path(tempfile.mkdtemp(prefix="silorec-flwr-"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = flower_env(home)
    env[NODE_CONFIG_ENV] = node_config
    if ray_address:
        env["RAY_ADDRESS"] = ray_address  # ray.init() in the simulation attaches to it
    federation = federation_config(scenario, cpus_per_node, gpus_per_node)
    run_config = " ".join(
        f"{key}={toml_string(value)}"
        for key, value in (
            ("scenario", source), ("run-dir", str(run_dir)), ("engine", "simulation")
        )
    )  # fmt: skip
    if seed is not None:
        run_config += f" seed={int(seed)}"
    if evaluate_from is not None:
        run_config += f" evaluate-from={toml_string(str(evaluate_from.resolve()))}"
    with simulation_superlink(home, env) as superlink:
        write_connection(home, CONNECTION, superlink.address)
        command = [
            binary("flwr"), "run", str(project.root), CONNECTION,
            "--federation-config", federation, "--run-config", run_config, "--stream",
        ]  # fmt: skip
        log.info("running: %s", " ".join(command))
        run_id = run_streaming(command, env, project.root, sys.stdout, timeout)
        if run_id is None:
            raise SimulationError("flwr run did not start a run (see its output above)", run_dir)
        outcome = wait_for_run(run_id, CONNECTION, env, timeout)
    log.info("flwr run %s: %s", run_id, outcome.status)
    if not outcome.completed:
        raise SimulationError(
            f"run {run_id} ended as '{outcome.status}': {outcome.details}", run_dir
        )
    return run_dir
