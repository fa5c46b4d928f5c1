"""The audit through Flower's simulation engine (`silorec simulate`, i.e. `flwr run`
on Ray): a default run's logs pass, and the hostile node is blocked there too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import processes_mentioning
from hostile.project import hostile_project
from test_audit_hostile import HOSTILE, LEAKS, check_blocked_run

from silorec.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "scenarios" / "tiny.toml"

pytestmark = [pytest.mark.flower, pytest.mark.slow]


def simulate(project: Path, out: Path, home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    command = [sys.executable, "-m", "silorec.cli", "simulate", str(TINY), "--project",
               str(project), "--out", str(out), "--flwr-home", str(home)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert processes_mentioning(str(home)) == []


def test_a_default_simulation_run_writes_logs_that_pass_the_audit(tmp_path: Path) -> None:
    out = tmp_path / "run"
    simulate(ROOT, out, tmp_path / "flwr-home")
    logs = sorted(p.name for p in (out / "audit").glob("*.jsonl"))
    assert logs == ["node-alpha.jsonl", "node-beta.jsonl", "node-delta.jsonl",
                    "node-gamma.jsonl", "server.jsonl"]  # fmt: skip
    assert main(["audit", str(out)]) == 0
    report = json.loads((out / "audit.json").read_text())
    assert report["verdict"] == "PASS" and report["findings"] == []
    # Flower's node ids and message ids match across the node and server logs.
    assert len({n["node_id"] for n in report["nodes"]}) == 4
    assert all(n["has_log"] and n["replies"] == n["messages_received"] for n in report["nodes"])


def test_a_hostile_node_is_blocked_in_simulation(tmp_path: Path) -> None:
    project = hostile_project(tmp_path / "project", ",".join(LEAKS), HOSTILE)
    out = tmp_path / "run"
    simulate(project.root, out, tmp_path / "flwr-home")
    check_blocked_run(out, [what for tried in LEAKS.values() for what in tried])
