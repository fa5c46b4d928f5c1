"""Simulation resources from the scenario, and the same simulation on a running Ray
cluster: a Ray head started on loopback here (`ray start --head`), the simulated
nodes run as its actors, and everything it started is stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from silorec.engine.simulation import federation_config
from silorec.results import load_run
from silorec.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "scenarios" / "tiny.toml"


def test_simulation_resources_come_from_the_scenario_and_flags_override(tmp_path: Path) -> None:
    scenario = load_scenario(TINY)
    assert federation_config(scenario) == "num-supernodes=4"
    text = TINY.read_text() + "\n[simulation]\ncpus_per_node = 0.5\ngpus_per_node = 0.25\n"
    (tmp_path / "s.toml").write_text(text)
    with_resources = load_scenario(tmp_path / "s.toml")
    assert federation_config(with_resources) == (
        "num-supernodes=4 client-resources-num-cpus=0.5 client-resources-num-gpus=0.25"
    )
    assert federation_config(with_resources, 1, 0) == "num-supernodes=4 client-resources-num-cpus=1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


@pytest.fixture
def ray_head() -> Iterator[tuple[str, Path]]:
    """A one-machine Ray cluster on 127.0.0.1 with a private (short: Ray's socket
    paths are length-limited) temp dir; stopped by the PIDs of its processes."""
    ray = Path(sys.executable).parent / "ray"
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = _free_port()
    started = subprocess.run(
        [str(ray), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
         "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
         "--temp-dir", str(temp)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield f"127.0.0.1:{port}", temp
    finally:
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
            for pid in _pids_mentioning(str(temp)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while _pids_mentioning(str(temp)) and time.monotonic() < deadline:
                time.sleep(0.2)
        assert not _pids_mentioning(str(temp)), "every process of the Ray head stopped"
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.flower
def test_a_simulation_runs_on_a_running_ray_cluster(ray_head, tmp_path: Path) -> None:  # noqa: ANN001
    address, temp = ray_head
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLWR_", "RAY_"))}
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "silorec.cli", "simulate", str(TINY), "--project", str(ROOT),
         "--out", str(out), "--flwr-home", str(tmp_path / "flwr-home"),
         "--ray-address", address],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = load_run(out)
    assert results.status == "completed" and results.engine == "simulation"
    # the nodes ran as actors of *that* cluster: their logs are in its session folder
    logs = list((temp / "session_latest" / "logs").glob("worker-*"))
    actors = [p for p in logs if "ClientAppActor" in p.read_text(errors="replace")]
    assert actors, f"no ClientAppActor among the cluster's {len(logs)} worker logs"
    domains = {"alpha", "beta", "gamma", "delta"}
    seen = "".join(p.read_text(errors="replace") for p in logs)
    assert all(f"preparing domain '{d}'" in seen for d in domains)
