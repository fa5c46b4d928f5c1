"""`silorec data stats|prepare`: output, relative paths, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from silorec.data.cli import main, register

SCENARIO = """
name = "cli-test"
[data]
how_to_get = "Run make-data.sh."

[[domains]]
name = "kitchen"
data = {kind = "generic", path = "data/kitchen"}

[[domains]]
name = "garden"
data = {kind = "generic", path = "data/garden"}
subsample = {k_core = 2}
"""


def write_generic(folder: Path, rows: list[tuple[str, str, int]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id,item_id,timestamp"] + [f"{u},{i},{t}" for u, i, t in rows]
    (folder / "interactions.csv").write_text("\n".join(lines) + "\n")
    items = sorted({i for _, i, _ in rows})
    (folder / "items.csv").write_text(
        "item_id,title\n" + "".join(f"{i},Title {i}\n" for i in items)
    )


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    write_generic(
        tmp_path / "data" / "kitchen", [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "x", 1)]
    )
    write_generic(
        tmp_path / "data" / "garden",
        [("a", "p", 1), ("a", "q", 2), ("b", "p", 1), ("b", "q", 2), ("c", "r", 1)],
    )
    path = tmp_path / "scenario.toml"
    path.write_text(SCENARIO)
    return path


def test_stats_prints_before_and_after(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "stats", str(scenario), "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "domain 'kitchen'" in out and "domain 'garden'" in out
    assert "raw" in out and "prepared" in out
    garden = out[out.index("domain 'garden'") :]
    users_row = next(line for line in garden.splitlines() if line.startswith("users"))
    assert users_row.split()[1:] == ["3", "2"]  # k_core=2 drops c
    assert "length mean" in out and "interactions" in out


def test_stats_one_domain_from_another_folder(
    scenario: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(
        tmp_path / "data"
    )  # relative data paths follow the scenario file, not the cwd
    assert main(["data", "stats", str(scenario), "--domain", "kitchen"]) == 0
    out = capsys.readouterr().out
    assert "kitchen" in out and "garden" not in out


def test_prepare_reports_and_then_hits_cache(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["data", "prepare", str(scenario), "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "kitchen: 2 users, 3 items, 4 interactions (prepared in" in out
    assert "2 domain(s) ready in" in out
    assert main(args) == 0
    assert out.count("from cache") == 0 and capsys.readouterr().out.count("from cache") == 2
    assert len(list((tmp_path / "c" / "domains").iterdir())) == 2


def test_data_dir_for_one_domain(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_generic(tmp_path / "mine", [("z", "x", 1)])
    assert (
        main(
            [
                "data",
                "prepare",
                str(scenario),
                "--domain",
                "kitchen",
                "--data-dir",
                str(tmp_path / "mine"),
            ]
        )
        == 0
    )
    assert "kitchen: 1 users" in capsys.readouterr().out
    assert main(["data", "prepare", str(scenario), "--data-dir", str(tmp_path / "mine")]) == 2
    assert "--data-dir" in capsys.readouterr().err


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert err.count("\n") == 1
    return err


def test_missing_data_is_one_line_exit_2(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "garden" / "interactions.csv").unlink()
    assert main(["data", "stats", str(scenario), "--domain", "garden"]) == 2
    err = one_line_error(capsys)
    assert "domain 'garden': data not found at" in err and "interactions.csv" in err
    assert "Run make-data.sh." in err


def test_bad_data_is_exit_2(
    scenario: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data" / "kitchen" / "items.csv").write_text("item_id,title\nx,X\n")
    assert main(["data", "prepare", str(scenario)]) == 2
    assert (
        "items.csv: 2 item(s) used in interactions.csv are not in the items table"
        in one_line_error(capsys)
    )


def test_unknown_domain_is_exit_2(scenario: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "stats", str(scenario), "--domain", "attic"]) == 2
    assert "no domain 'attic' (known: kitchen, garden)" in one_line_error(capsys)


def test_bad_scenario_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[domains]]\nname = "a"\ndata = {kind = "generic", pth = "."}\n')
    assert main(["data", "stats", str(bad)]) == 2
    err = one_line_error(capsys)
    assert "bad.toml: invalid scenario: domains[0].data.pth: unknown key" in err
    assert main(["data", "stats", str(tmp_path / "missing.toml")]) == 2
    assert "scenario file not found" in one_line_error(capsys)


def test_register_into_another_parser(scenario: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="silorec")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run")
    register(sub)
    args = parser.parse_args(["data", "prepare", str(scenario), "--cache-dir", str(tmp_path / "c")])
    assert args.func(args) == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["data"])  # a data subcommand is required


def test_module_entry_point(scenario: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "silorec.data.cli",
            "data",
            "stats",
            str(scenario),
            "--domain",
            "nope",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
