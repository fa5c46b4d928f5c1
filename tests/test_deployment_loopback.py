"""A real Flower deployment on the loopback interface: one SuperLink with TLS and
SuperNode authentication, its ServerApp executor, and per domain of the default
scenario a SuperNode (own key, data, audit and cache folders, node config) with its
ClientApp executor: the processes of docker-compose.yml, started from the same
topology description, driven with the ``flwr`` CLI.

One federation serves the whole module (starting it takes ~30 s); the test that
kills a node runs last.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import tomli_w
from factories import processes_mentioning

from silorec.deploy.topology import NodeEndpoint, Topology, host_layout, supernode_command
from silorec.engine.deployment import (
    LoopbackFederation,
    RunOutcome,
    loopback_federation,
    submit_run,
)
from silorec.results import load_run
from silorec.scenario import builtin_scenario_text, load_scenario

ROOT = Path(__file__).resolve().parents[1]
MAKE_CERTS = ROOT / "deploy" / "make-certs.sh"
DOMAINS = [d.name for d in load_scenario("builtin:quickstart").domains]
INTRUDER = "intruder"  # a key pair that is never registered

pytestmark = [pytest.mark.flower, pytest.mark.slow]


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free right now."""
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [int(p.getsockname()[1]) for p in probes]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackFederation]:
    root = tmp_path_factory.mktemp("deployment")
    subprocess.run(
        [str(MAKE_CERTS), "-o", str(root / "credentials"), *DOMAINS, INTRUDER],
        check=True, capture_output=True,
    )  # fmt: skip
    superlink_port, *runtime_ports = free_ports(1 + len(DOMAINS))
    topology = Topology(
        superlink_port,
        tuple(NodeEndpoint(d, p) for d, p in zip(DOMAINS, runtime_ports, strict=True)),
    )
    with loopback_federation(topology, host_layout(str(root)), root / "flwr-home") as started:
        yield started
    assert processes_mentioning(str(root)) == []


def run(federation: LoopbackFederation, run_dir: Path, scenario: str = "") -> RunOutcome:
    """The scenario through ``flwr run`` on the federation, results in ``run_dir``."""
    return submit_run(
        ROOT,
        federation.connection,
        federation.env,
        {"scenario": scenario, "run-dir": str(run_dir), "engine": "deployment"},
        run_dir.parent / f"{run_dir.name}.flwr.log",
    )


def failure_context(federation: LoopbackFederation, run_dir: Path) -> str:
    log = run_dir.parent / f"{run_dir.name}.flwr.log"
    return log.read_text()[-3000:] if log.exists() else f"no log; see {federation.log_dir}"


def audit_dirs(federation: LoopbackFederation) -> list[Path]:
    layout = federation.layout
    return [Path(layout.for_node(layout.node_audit, d)) for d in DOMAINS]


def test_default_scenario_completes_with_tls_and_node_authentication(
    federation: LoopbackFederation, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    outcome = run(federation, run_dir)
    assert outcome.completed, f"{outcome}\n{failure_context(federation, run_dir)}"
    results = load_run(run_dir)
    assert results.status == "completed" and results.engine == "deployment"
    assert results.failures == []
    # The domains were served by the authenticated nodes, each as its node config says.
    assert {n.domain: str(n.node_id) for n in results.nodes} == federation.node_ids
    assert {r.domain for r in results.rows} == set(DOMAINS)
    # Each node logged what it sent in its own audit folder, and every log passes.
    for audit_dir, domain in zip(audit_dirs(federation), DOMAINS, strict=True):
        logs = sorted(p.name for p in audit_dir.glob("node-*.jsonl"))
        assert logs == [f"node-{domain}.jsonl"] and (audit_dir / logs[0]).stat().st_size
    command = [sys.executable, "-m", "silorec.cli", "audit", str(run_dir), "--node-logs",
               *map(str, audit_dirs(federation))]  # fmt: skip
    audited = subprocess.run(command, capture_output=True, text=True, check=False)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert f"audit PASS: {len(DOMAINS)} node(s)" in audited.stdout


def test_a_node_whose_key_is_not_registered_is_refused(federation: LoopbackFederation) -> None:
    (runtime_port,) = free_ports(1)
    layout = federation.layout
    impostor = NodeEndpoint(INTRUDER, runtime_port)
    command = supernode_command(impostor, layout, federation.topology.superlink_address)
    process = federation.start("supernode-intruder", command)
    try:
        process.popen.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"an unregistered node was not refused; see {process.log_file}")
    assert process.popen.returncode != 0
    assert "Failed to activate SuperNode" in process.log_file.read_text()
    assert federation.online() == sorted(DOMAINS)


def quick_variant(path: Path, train_timeout_s: float) -> Path:
    """The default scenario with short local training and a short training timeout,
    so that waiting for a dead node costs seconds, not the default hour."""
    scenario = tomllib.loads(builtin_scenario_text("quickstart"))
    scenario["name"] = "quickstart-quick"
    scenario["train"].update(epochs=2, patience=1)
    scenario.setdefault("federation", {})["train_timeout_s"] = train_timeout_s
    path.write_text(tomli_w.dumps(scenario), encoding="utf-8")
    return path


def wait_for_line(log_file: Path, text: str, after: int, timeout: float) -> None:
    """Return once ``text`` appears in ``log_file`` past byte ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log_file.read_bytes()[after:].decode(errors="replace"):
            return
        time.sleep(0.2)
    pytest.fail(f"'{text}' did not appear in {log_file} within {timeout:g} s")


def test_a_node_killed_while_training_does_not_hang_the_run(
    federation: LoopbackFederation, tmp_path: Path
) -> None:
    victim = DOMAINS[-1]
    timeout_s = 90.0
    scenario = quick_variant(tmp_path / "quick.toml", timeout_s)
    run_dir = tmp_path / "run"
    executor_log = federation.nodes[victim].executor.log_file
    seen = executor_log.stat().st_size
    outcome: list[RunOutcome] = []
    runner = threading.Thread(
        target=lambda: outcome.append(run(federation, run_dir, str(scenario)))
    )
    started = time.monotonic()
    runner.start()
    wait_for_line(executor_log, f"finetune on domain '{victim}'", seen, timeout=600)
    federation.nodes[victim].kill()  # SIGKILL: no goodbye to the SuperLink
    runner.join(timeout=900)
    assert not runner.is_alive(), "the run hung after a node was killed"
    assert outcome and outcome[0].completed, f"{outcome}\n{failure_context(federation, run_dir)}"
    results = load_run(run_dir)
    assert results.status == "completed"
    failed = {f.domain: f for f in results.failures}
    assert set(failed) == {victim} and failed[victim].phase == "fine-tune"
    assert "no reply" in failed[victim].reason or "error" in failed[victim].reason
    assert {m["label"]: m["domains"] for m in results.merges}["average"] == DOMAINS[:-1]
    # The run waited for the dead node at most about its training timeout.
    assert time.monotonic() - started < 600
