"""The same apps through Flower's simulation engine (`flwr run .` on Ray), driven by
`silorec simulate`: private FLWR_HOME, own SuperLink on a free port, stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from factories import processes_mentioning

from silorec.results import load_run

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "scenarios" / "tiny.toml"

pytestmark = [pytest.mark.flower, pytest.mark.slow]


def simulate(scenario: Path, out: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    command = [sys.executable, "-m", "silorec.cli", "simulate", str(scenario),
               "--out", str(out), "--flwr-home", str(home)]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_tiny_scenario_completes_through_flwr_run(tmp_path: Path) -> None:
    home, out = tmp_path / "flwr-home", tmp_path / "run"
    done = simulate(TINY, out, home)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "finished:completed" in done.stderr
    results = load_run(out)
    assert results.status == "completed" and results.engine == "simulation"
    assert len(results.rows) == 8 * 4 * 2  # models x domains x splits
    # Simulated nodes have Flower's random node ids, one per domain.
    assert len({n.node_id for n in results.nodes}) == 4
    assert processes_mentioning(str(home)) == []


def test_a_failed_run_is_reported_as_failed(tmp_path: Path) -> None:
    """`flwr run` exits 0 when the run fails; `silorec simulate` must not."""
    text = TINY.read_text()
    for seed in (1, 2):
        text = text.replace(
            f'data = {{ kind = "synthetic", world_seed = 1, n_users = 60, n_items = 40, seed = {seed} }}',
            f'data = {{ kind = "mergerec", path = "missing-{seed}.tar.gz" }}',
        )
    scenario = tmp_path / "broken.toml"
    scenario.write_text(text)
    home, out = tmp_path / "flwr-home", tmp_path / "run"
    done = simulate(scenario, out, home)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "finished:failed" in done.stderr
    assert load_run(out).status == "failed"
    assert processes_mentioning(str(home)) == []


def test_seeds_vary_node_side_randomness_through_flwr_run(tmp_path: Path) -> None:
    """``silorec simulate --seeds 0 1``: every node trains with the run's seed (nodes
    kept prepared between runs must not keep the previous run's), and the summary is
    written at the seed level. The two runs share one FLWR_HOME, as a user's would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    home, out = tmp_path / "flwr-home", tmp_path / "seeds"
    command = [sys.executable, "-m", "silorec.cli", "simulate", str(TINY), "--seeds", "0", "1",
               "--out", str(out), "--flwr-home", str(home)]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for seed in (0, 1):
        results = load_run(out / f"seed-{seed}")
        assert results.status == "completed" and results.engine == "simulation"
        for domain in ("alpha", "beta", "gamma"):
            assert results.node(domain).info["train_seed"] == seed
    assert "Paired t-tests over the 2 seeds" in (out / "summary.md").read_text()
    assert processes_mentioning(str(home)) == []


def test_weaving_runs_through_flwr_run_and_its_audit_passes(tmp_path: Path) -> None:
    """The weaving schedule is a ServerApp phase over Messages, so it runs on Ray as
    in-process: adapters only, every hybrid woven, the audit on the logs passes."""
    from silorec.cli import main

    text = TINY.read_text().replace(
        "[[domains]]",
        '[weave]\ntargets = ["alpha"]\nrank = 4\nrounds = 1\nadapter_epochs = 1\n\n[[domains]]',
        1,
    )
    scenario = tmp_path / "weave.toml"
    scenario.write_text(text)
    home, out = tmp_path / "flwr-home", tmp_path / "run"
    done = simulate(scenario, out, home)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = load_run(out)
    assert results.status == "completed" and results.engine == "simulation", results.failures
    assert {"hybrid:alpha+beta", "hybrid:alpha+gamma", "weave:alpha uniform"} <= set(
        results.models()
    )
    assert main(["audit", str(out)]) == 0
    assert processes_mentioning(str(home)) == []
