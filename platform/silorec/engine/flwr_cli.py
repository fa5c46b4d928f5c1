"""Driving Flower's own command line and processes, as an operator would: shared by
the simulation engine (``silorec simulate``) and the loopback deployment.

Facts this encodes (checked with flwr 1.41 here): ``flwr run`` exits 0 even when the
run fails, and ``--stream`` may stop before the run ends, so a run's outcome is read
back with ``flwr ls`` until it has finished; the SuperLink spawns ``flower-superexec``
by name; a process group started with a new session is stopped by PID as a whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

COMPLETED = "finished:completed"
OFFLINE_FLOWER_ENV = {
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
}
RUN_ID = re.compile(r"Successfully started run (\d+)")


class FlowerCliError(RuntimeError):
    """A Flower command or process that failed; the message says which and why."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run submitted with ``flwr run`` ended, as the SuperLink reports it."""

    run_id: str
    status: str  # "finished:completed", "finished:failed", ...
    details: str

    @property
    def completed(self) -> bool:
        return self.status == COMPLETED


def flower_env(flwr_home: Path) -> dict[str, str]:
    """The environment for Flower's processes: offline, a private home, and this
    interpreter's scripts first on PATH (the SuperLink spawns ``flower-superexec`` by
    name, which fails from a virtualenv that was not activated)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, **OFFLINE_FLOWER_ENV, "FLWR_HOME": str(flwr_home), "PATH": path}


def binary(name: str) -> str:
    """A Flower executable next to this interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FlowerCliError(f"'{name}' not found: install silorec (it brings flwr)")
    return found


def toml_string(value: str) -> str:
    """A TOML basic string literal (for ``--run-config`` values and config.toml)."""
    return json.dumps(value)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process_group(process: subprocess.Popen[Any], grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``process`` (started with a new session), then
    SIGKILL whatever is left after ``grace_s``."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def write_connection(
    flwr_home: Path, name: str, address: str, ca_certificate: Path | None = None
) -> None:
    """Make ``name`` the default ``flwr`` CLI connection in ``$FLWR_HOME/config.toml``:
    the SuperLink at ``address``, over TLS checked against ``ca_certificate``, or
    insecure (a local simulation SuperLink) when there is none."""
    flwr_home.mkdir(parents=True, exist_ok=True)
    security = (
        f"root-certificates = {toml_string(str(ca_certificate))}\n"
        if ca_certificate is not None
        else "insecure = true\n"
    )
    (flwr_home / "config.toml").write_text(
        f"[superlink]\ndefault = {toml_string(name)}\n\n"
        f"[superlink.{name}]\naddress = {toml_string(address)}\n{security}",
        encoding="utf-8",
    )


def flwr_json(args: list[str], env: Mapping[str, str], timeout: float = 120.0) -> dict[str, Any]:
    """``flwr ARGS --format json``; its answer, or :class:`FlowerCliError` with
    Flower's own message when the command fails (it may exit 0 with
    ``"success": false``)."""
    command = [binary("flwr"), *args, "--format", "json"]
    done = subprocess.run(command, env=dict(env), capture_output=True, text=True, timeout=timeout)
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = {"success": False, "error-message": (done.stdout + done.stderr).strip()}
    if done.returncode != 0 or not answer.get("success", False):
        message = str(answer.get("error-message", "")).strip()[-2000:]
        raise FlowerCliError(f"flwr {' '.join(args[:2])} failed: {message}")
    return dict(answer)


def run_status(run_id: str, connection: str, env: Mapping[str, str]) -> RunOutcome:
    """A run's status as ``flwr ls`` reports it."""
    runs = flwr_json(["ls", connection, "--run-id", run_id], env).get("runs", [])
    if not runs:
        raise FlowerCliError(f"flwr ls knows no run {run_id}")
    return RunOutcome(run_id, str(runs[0].get("status")), str(runs[0].get("status-details", "")))


def wait_for_run(
    run_id: str, connection: str, env: Mapping[str, str], timeout: float, poll_s: float = 3.0
) -> RunOutcome:
    """The run's outcome once it has finished, or :class:`FlowerCliError` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (outcome := run_status(run_id, connection, env)).status.startswith("finished"):
        if time.monotonic() >= deadline:
            raise FlowerCliError(f"run {run_id} still '{outcome.status}' after {timeout:g} s")
        time.sleep(poll_s)
    return outcome


def run_streaming(
    command: list[str], env: Mapping[str, str], cwd: Path, sink: TextIO, timeout: float
) -> str | None:
    """Run ``flwr run ... --stream``, copying its output to ``sink``; returns the id of
    the run it started (None if it started none)."""
    run_id = None
    with subprocess.Popen(
        command, env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            sink.write(line)
            match = RUN_ID.search(line)
            if match:
                run_id = match.group(1)
        process.wait(timeout=timeout)
    sink.flush()
    return run_id
