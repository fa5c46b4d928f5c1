"""A real Flower deployment of silorec on one machine: the processes of a
:class:`~silorec.deploy.topology.Topology` on the loopback interface, TLS and
SuperNode authentication on, driven through the ``flwr`` CLI as an operator would.

Every process is started in its own session (process group) and stopped by PID,
nodes before the SuperLink (killed together and restarted on the same database, the
nodes would be refused while the SuperLink still counts them online). ``flwr run``
exits 0 even when the run fails, so a run's outcome is read back with ``flwr ls``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from silorec.data.cache import CACHE_ENV
from silorec.deploy.topology import (
    LOOPBACK,
    Layout,
    NodeEndpoint,
    Topology,
    clientapp_executor_command,
    serverapp_executor_command,
    superlink_command,
    supernode_command,
)
from silorec.engine.flwr_cli import (
    RUN_ID,
    FlowerCliError,
    RunOutcome,
    flower_env,
    flwr_json,
    stop_process_group,
    toml_string,
    wait_for_run,
    write_connection,
)
from silorec.logs import get_logger

log = get_logger("silorec.deployment")


class DeploymentError(FlowerCliError):
    """A deployment process that would not start; the message says which, and where
    its output is."""


def submit_run(
    project_root: Path,
    connection: str,
    env: Mapping[str, str],
    run_config: Mapping[str, str],
    log_file: Path,
    timeout: float = 3600.0,
) -> RunOutcome:
    """``flwr run PROJECT CONNECTION --stream`` with ``run_config`` (string values),
    its output in ``log_file``; returns how the run ended once it has."""
    started = time.monotonic()
    command = ["flwr", "run", str(project_root), connection, "--stream"]
    if run_config:
        pairs = " ".join(f"{key}={toml_string(value)}" for key, value in run_config.items())
        command += ["--run-config", pairs]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w", encoding="utf-8") as out:
        subprocess.run(
            command, env=dict(env), cwd=project_root, stdout=out, stderr=subprocess.STDOUT,
            timeout=timeout, check=False,
        )  # fmt: skip
    match = RUN_ID.search(log_file.read_text(encoding="utf-8"))
    if match is None:
        raise DeploymentError(f"flwr run started no run; see {log_file}")
    return wait_for_run(match.group(1), connection, env, timeout - (time.monotonic() - started))


@dataclass
class Process:
    """A process started here, leading its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_file: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL what is left (by PID, never by name)."""
        stop_process_group(self.popen)

    def kill(self) -> None:
        """SIGKILL the process group at once, as when a node's machine vanishes."""
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()


def start_process(name: str, command: list[str], env: Mapping[str, str], log_dir: Path) -> Process:
    """Start ``command`` in a new session, its output in ``log_dir/NAME.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"{name}.log"
    with open(log_file, "ab") as out:
        popen = subprocess.Popen(
            command, env=dict(env), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    log.info("started %s (pid %d): %s", name, popen.pid, " ".join(command))
    return Process(name, popen, log_file)


def wait_for_port(process: Process, port: int, timeout: float = 60.0) -> None:
    """Return once ``process`` accepts connections on ``port`` of the loopback."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise DeploymentError(
                f"{process.name} exited with code {process.popen.returncode}; "
                f"see {process.log_file}"
            )
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.3)
    raise DeploymentError(f"{process.name} did not listen on port {port} within {timeout:g} s")


@dataclass
class NodeProcesses:
    """A domain node: its SuperNode and its ClientApp executor."""

    supernode: Process
    executor: Process

    def kill(self) -> None:
        """SIGKILL both: the SuperLink notices only when heartbeats stop (~1 min)."""
        self.supernode.kill()
        self.executor.kill()


@dataclass
class LoopbackFederation:
    """A running federation on this machine (see :func:`loopback_federation`)."""

    topology: Topology
    layout: Layout
    connection: str
    env: dict[str, str]
    log_dir: Path
    nodes: dict[str, NodeProcesses] = field(default_factory=dict)
    node_ids: dict[str, str] = field(default_factory=dict)  # domain -> registered id
    stack: ExitStack = field(default_factory=ExitStack)

    def start(self, name: str, command: list[str], env: Mapping[str, str] | None = None) -> Process:
        """Start a process of this federation; it is stopped when the federation is."""
        process = start_process(name, command, env or self.env, self.log_dir)
        self.stack.callback(process.stop)
        return process

    def register(self, domain: str) -> str:
        """Register ``domain``'s public key with the SuperLink; returns its node id."""
        public_key = self.layout.for_node(self.layout.node_key, domain) + ".pub"
        answer = flwr_json(["supernode", "register", public_key, self.connection], self.env)
        self.node_ids[domain] = str(answer["node-id"])
        return self.node_ids[domain]

    def start_node(self, node: NodeEndpoint) -> NodeProcesses:
        """Start ``node``'s SuperNode and ClientApp executor, each node with its own
        data, audit and cache folders (created when missing)."""
        data, audit, cache = (
            Path(self.layout.for_node(template, node.domain))
            for template in (self.layout.node_data, self.layout.node_audit, self.layout.node_cache)
        )
        for folder in (data, audit, cache):
            folder.mkdir(parents=True, exist_ok=True)
        env = {**self.env, CACHE_ENV: str(cache)}
        command = supernode_command(node, self.layout, self.topology.superlink_address)
        processes = NodeProcesses(
            supernode=self.start(f"supernode-{node.domain}", command, env),
            executor=self.start(
                f"clientapp-executor-{node.domain}", clientapp_executor_command(node), env
            ),
        )
        self.nodes[node.domain] = processes
        return processes

    def online(self) -> list[str]:
        """Domains whose registered node the SuperLink counts as online."""
        listed = flwr_json(["supernode", "ls", self.connection], self.env).get("nodes", [])
        online = {str(n.get("node-id")) for n in listed if n.get("status") == "online"}
        return sorted(domain for domain, node_id in self.node_ids.items() if node_id in online)

    def wait_until_online(self, domains: list[str], timeout: float = 90.0) -> None:
        """Return once the nodes of every domain in ``domains`` are online."""
        deadline = time.monotonic() + timeout
        while (missing := sorted(set(domains) - set(self.online()))) and (
            time.monotonic() < deadline
        ):
            time.sleep(1.0)
        if missing:
            raise DeploymentError(
                f"nodes {missing} not online after {timeout:g} s; see {self.log_dir}"
            )


@contextmanager
def loopback_federation(
    topology: Topology,
    layout: Layout,
    flwr_home: Path,
    *,
    connection: str = "silorec-loopback",
    startup_timeout: float = 90.0,
) -> Iterator[LoopbackFederation]:
    """Start the SuperLink and ServerApp executor of ``topology``, register every
    node's key, start every node and wait until all are online; on exit stop every
    process, nodes first. The credentials must exist (``deploy/make-certs.sh``)."""
    env = flower_env(flwr_home)
    Path(layout.database).parent.mkdir(parents=True, exist_ok=True)
    write_connection(flwr_home, connection, topology.superlink_address, Path(layout.ca_certificate))
    federation = LoopbackFederation(topology, layout, connection, env, flwr_home / "logs")
    with federation.stack:
        superlink = federation.start("superlink", superlink_command(topology, layout))
        wait_for_port(superlink, topology.superlink_port, startup_timeout)
        federation.start("serverapp-executor", serverapp_executor_command(topology, layout))
        for node in topology.nodes:
            federation.register(node.domain)
            federation.start_node(node)
        federation.wait_until_online([n.domain for n in topology.nodes], startup_timeout)
        yield federation
