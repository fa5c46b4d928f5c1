"""The user-facing paths end to end: the README's main command and the shipped
scenarios on the real Amazon data."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from silorec.cli import main
from silorec.results import load_run
from silorec.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    """The commands of the README's 'Set up and run' code block."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up and run", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README has no set-up code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_has_two_setup_commands_install_then_run() -> None:
    install, run = readme_setup_commands()
    assert 'pip install -e ".[dev]"' in install
    assert run == "silorec simulate"


@pytest.mark.slow
@pytest.mark.flower
def test_readme_main_command_completes_the_default_scenario(tmp_path: Path) -> None:
    """`silorec simulate` (the README's second command): the built-in quickstart,
    real MiniLM, through `flwr run .`, to a completed run with every model on every
    domain."""
    _, run = readme_setup_commands()
    command = [sys.executable, "-m", "silorec.cli", *shlex.split(run)[1:],
               "--runs-dir", str(tmp_path), "--flwr-home", str(tmp_path / "flwr-home")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("quickstart-")]
    results = load_run(run_dir)
    scenario = load_scenario(None)
    assert results.status == "completed" and results.engine == "simulation"
    domains = [d.name for d in scenario.domains]
    models = {"theta0", *(f"individual:{d}" for d in domains),
              *(m.display_label for m in scenario.merges)}  # fmt: skip
    assert {m["method"] for m in results.merges} == {
        "average",
        "task_arithmetic",
        "ties",
        "dare",
        "mergerec",
    }
    for model in models:
        for domain in domains:
            assert results.value(model, domain, "test", "recall@10") is not None, (model, domain)
    assert "Test Recall@10 (completed)" in done.stdout


@pytest.mark.shared_data
def test_amazon_data_end_to_end_small(
    amazon_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Real MergeRec archives through the whole pipeline (tiny subsample)."""
    monkeypatch.setenv("SILOREC_AMAZON_DIR", str(amazon_dir))
    scenario = ROOT / "tests" / "scenarios" / "amazon_small.toml"
    assert main(["run", str(scenario), "--out", str(tmp_path / "run")]) == 0
    results = load_run(tmp_path / "run")
    assert results.status == "completed"
    assert results.domains("unseen") == ["pantry"]
    for name in ("beauty", "sports", "toys", "pantry"):
        node = results.node(name)
        assert node is not None and node.status == "ok"
        # The subsample's users plus the audit's canary users (planted in training data).
        canaries = results.scenario["audit"]["canaries"]
        assert 250 + canaries <= node.info["n_users"] <= 300 + canaries
    assert len(results.rows) == (1 + 3 + 2) * 4 * 2
    assert "Test Recall@10 (completed)" in capsys.readouterr().out


def test_amazon_without_data_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    """Before anything runs: the error names the variable and where to get the data."""
    monkeypatch.delenv("SILOREC_AMAZON_DIR", raising=False)
    code = main(["run", str(ROOT / "scenarios" / "amazon.toml"), "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    assert "domain 'beauty'" in err and "SILOREC_AMAZON_DIR" in err
    assert "github.com/DIALLab-SKKU/MergeRec" in err
    assert not (tmp_path / "run").exists()


def test_a_run_that_fails_says_why(tmp_path: Path, capsys) -> None:
    """Data present but unreadable on two of three nodes: too few models to merge."""
    for name in ("Beta", "Gamma"):
        (tmp_path / f"{name}.tar.gz").write_bytes(b"not a tar archive")
    text = (ROOT / "tests" / "scenarios" / "tiny.toml").read_text()
    for seed, name in ((2, "Beta"), (3, "Gamma")):
        text = text.replace(
            f'data = {{ kind = "synthetic", world_seed = 1, n_users = 60, n_items = 40, seed = {seed} }}',
            f'data = {{ kind = "mergerec", path = "{name}.tar.gz" }}',
        )
    scenario = tmp_path / "broken.toml"
    scenario.write_text(text)
    assert main(["run", str(scenario), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "only 1 domain model(s) arrived" in err
    assert "Beta.tar.gz" in err and "Gamma.tar.gz" in err
    assert load_run(tmp_path / "run").status == "failed"


def test_a_bad_scenario_is_rejected_before_anything_runs(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (ROOT / "scenarios" / "quickstart.toml").read_text().replace("epochs = 20", "epoch = 20")
    )
    assert main(["run", str(bad), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.epoch: unknown key" in err and str(bad) in err
    assert not (tmp_path / "run").exists()
