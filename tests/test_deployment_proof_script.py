"""deploy/compose-proof.sh without Docker: its helpers find the Debian mirror from
either apt source layout (deb822 ``*.sources`` or one-line ``sources.list``), and any
failure ends with ``compose-proof: FAILED: <step>: <reason>`` and a non-zero status,
never a bare "done" (the proof itself needs Docker: docs/deployment.md)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "compose-proof.sh"

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian/ http://second.example.org/debian
Suites: bookworm bookworm-updates
Components: main
"""

ONE_LINE = """\
# deb http://commented.example.org/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://oneline.example.org/debian bookworm main
"""


def _stub_bin(tmp_path: Path) -> Path:
    """Commands the helpers must not reach for real: no Docker engine, no apt."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("docker", "docker-compose", "apt-get", "dockerd"):
        stub = stubs / name
        stub.write_text("#!/bin/sh\nexit 1\n")
        stub.chmod(0o755)
    return stubs


def _bash(script: str, tmp_path: Path, apt_etc: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{_stub_bin(tmp_path)}:/usr/bin:/bin",
        "APT_ETC": str(apt_etc),
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        ["bash", "-c", f"source {SCRIPT}\n{script}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )


def _apt(tmp_path: Path, sources: str | None = None, sources_list: str | None = None) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    if sources is not None:
        (apt / "sources.list.d" / "debian.sources").write_text(sources)
    if sources_list is not None:
        (apt / "sources.list").write_text(sources_list)
    return apt


def test_the_mirror_comes_from_deb822_sources_without_a_sources_list(tmp_path: Path) -> None:
    done = _bash("debian_mirror", tmp_path, _apt(tmp_path, sources=DEB822))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://mirror.example.org/debian"


def test_the_mirror_comes_from_a_one_line_sources_list(tmp_path: Path) -> None:
    done = _bash("debian_mirror", tmp_path, _apt(tmp_path, sources_list=ONE_LINE))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://oneline.example.org/debian"


def test_a_machine_with_no_sources_fails_saying_where_it_looked(tmp_path: Path) -> None:
    done = _bash("debian_mirror", tmp_path, _apt(tmp_path))
    assert done.returncode != 0
    assert "no Debian mirror in" in done.stderr and "sources.list" in done.stderr


def test_the_mirror_helper_fails_the_step_by_name(tmp_path: Path) -> None:
    """What broke the proof on a deb822-only machine: the mirror look-up inside a
    step. Now it either works or ends with a FAILED line naming the step."""
    script = (
        "trap cleanup EXIT\n"
        "trap 'on_error $? $LINENO \"$BASH_COMMAND\"' ERR\n"
        'step "base image and build extras"\n'
        'mirror=$(debian_mirror) || fail "cannot find the Debian mirror for debootstrap"\n'
        'echo "mirror $mirror"\n'
    )
    done = _bash(script, tmp_path, _apt(tmp_path))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "compose-proof: FAILED: base image and build extras: "
        "cannot find the Debian mirror for debootstrap"
    )
    assert "mirror" not in done.stdout.split("tear down")[0].replace("base image", "")


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("false", "'false' exited with status 1"),
        ("grep -q nothing /nonexistent/file", "exited with status 2"),
        ("x=$(exit 3)", "exited with status 3"),
    ],
)
def test_any_failing_command_ends_with_a_failed_line(
    tmp_path: Path, command: str, reason: str
) -> None:
    script = (
        "trap cleanup EXIT\n"
        "trap 'on_error $? $LINENO \"$BASH_COMMAND\"' ERR\n"
        'step "deploy/federation.sh up"\n'
        f"{command}\n"
        'echo "not reached"\n'
    )
    done = _bash(script, tmp_path, _apt(tmp_path, sources=DEB822))
    assert done.returncode != 0
    assert "not reached" not in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("compose-proof: FAILED: deploy/federation.sh up: "), last
    assert reason in last
    assert "== [" in done.stdout and "tear down" in done.stdout
    assert "done" not in done.stdout.split()


def test_sourcing_the_script_runs_nothing(tmp_path: Path) -> None:
    done = _bash("echo sourced", tmp_path, _apt(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sourced"


def test_the_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], env=dict(os.environ)).returncode == 0
