"""`silorec merge remove|add` with the evaluation round: the re-merged models go to
the real nodes (in this process, and in Flower simulation) and come back evaluated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from silorec.audit.auditor import audit_run
from silorec.cli import main
from silorec.provenance.replay import replay
from silorec.results import load_run

ROOT = Path(__file__).resolve().parents[1]
MERGES = 4


def _rows(run_dir: Path, model: str) -> dict[tuple[str, str], dict[str, float]]:
    return {(r.domain, r.split): r.metrics for r in load_run(run_dir).rows if r.model == model}


def _check_evaluated(original: Path, evaluated: Path) -> None:
    results = load_run(evaluated)
    assert results.status == "completed" and results.derived_from["evaluated"]
    assert results.derived_from["removed"] == ["gamma"]
    roles = {n.domain: n.role for n in results.nodes}
    assert roles == {"alpha": "merged", "beta": "merged", "gamma": "unseen", "delta": "unseen"}
    # the same θ0 on the same nodes and users: the round reproduces the run's rows
    assert _rows(evaluated, "theta0") == _rows(original, "theta0")
    merges = [m["label"] for m in results.merges]
    assert len(merges) == MERGES
    for label in merges:
        domains = {d for d, split in _rows(evaluated, label) if split == "test"}
        assert domains == {"alpha", "beta", "gamma", "delta"}, label
    # the new merges are not the old ones, and the run stands on its own
    assert _rows(evaluated, merges[1]) != _rows(original, merges[1])
    assert replay(evaluated / "merge-card.json").identical
    assert audit_run(evaluated).passed


def test_merge_remove_evaluates_the_new_merge_on_the_nodes(
    saved_tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "without-gamma"
    assert main(["merge", "remove", str(saved_tiny_run), "--domain", "gamma",
                 "--out", str(out), "--project", str(ROOT)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "evaluated on the nodes" in printed and "individual:gamma" not in printed
    _check_evaluated(saved_tiny_run, out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging removed"
    back = tmp_path / "back"
    assert main(["merge", "add", str(out), "--domain", "gamma", "--from", str(saved_tiny_run),
                 "--out", str(back), "--project", str(ROOT)]) == 0  # fmt: skip
    for label in [m["label"] for m in load_run(saved_tiny_run).merges]:
        assert _rows(back, label) == _rows(saved_tiny_run, label), label


@pytest.mark.slow
@pytest.mark.flower
def test_merge_remove_evaluates_in_flower_simulation(saved_tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "sim"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    env["FLWR_HOME"] = str(tmp_path / "flwr-home")
    done = subprocess.run(
        [sys.executable, "-m", "silorec.cli", "merge", "remove", str(saved_tiny_run),
         "--domain", "gamma", "--out", str(out), "--engine", "simulation",
         "--project", str(ROOT)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert load_run(out).engine == "simulation"
    _check_evaluated(saved_tiny_run, out)
