"""The architecture rules are checked, not trusted: import-linter contracts in
pyproject.toml, run here, plus proof that the check would catch a violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_linter_contracts_are_kept() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    done = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    return grimp.build_graph("silorec", "server", "clients")


def test_contracts_name_modules_that_exist(graph: grimp.ImportGraph) -> None:
    """A renamed module would make a contract silently vacuous."""
    modules = graph.modules
    for contract in contracts():
        for name in contract["source_modules"] + contract["forbidden_modules"]:
            if name.split(".")[0] in {"silorec", "server", "clients"}:
                assert name in modules, f"contract '{contract['name']}' names missing {name}"


def test_the_server_rule_would_catch_an_indirect_import(graph: grimp.ImportGraph) -> None:
    assert not graph.chain_exists(
        importer="silorec.apps.server", imported="silorec.data", as_packages=True
    )
    # A helper the server uses starts importing a data reader: the rule must see it.
    graph.add_import(importer="silorec.results.io", imported="silorec.data.domain")
    assert graph.chain_exists(
        importer="silorec.apps.server", imported="silorec.data", as_packages=True
    )


def test_the_node_side_does_read_data(graph: grimp.ImportGraph) -> None:
    """Sanity check of the graph itself: the ClientApp reaches the data readers."""
    assert graph.chain_exists(importer="clients.app", imported="silorec.data", as_packages=True)


def test_platform_is_only_a_source_root() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists()
    import platform

    assert "silorec" not in str(platform.__file__)


def test_apps_are_thin() -> None:
    """The Flower apps only route messages; the logic lives in silorec."""
    for path in [ROOT / "clients" / "app.py", ROOT / "server" / "app.py"]:
        code = [
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith(("#", '"""'))
        ]
        assert len(code) < 40, f"{path} has {len(code)} lines of code"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("silorec.apps.client", "silorec.apps.mods"),
        ("silorec.results.io", "silorec.results.report"),
        ("silorec.results.io", "silorec.results.plots"),
        ("silorec.scenario.schema", "silorec.text.encoders"),
        ("silorec.wire.replies", "silorec.apps.server"),
    ],
)
def test_these_modules_do_not_import_each_other_in_a_cycle(
    graph: grimp.ImportGraph, first: str, second: str
) -> None:
    """Cycles that existed once and were taken apart: imports run one way."""
    both = graph.chain_exists(importer=first, imported=second) and graph.chain_exists(
        importer=second, imported=first
    )
    assert not both, f"{first} and {second} import each other"


def test_no_import_cycle_within_the_wire_protocol(graph: grimp.ImportGraph) -> None:
    modules = [m for m in graph.modules if m.startswith("silorec.wire.")]
    for a in modules:
        for b in modules:
            if a < b:
                assert not (graph.chain_exists(importer=a, imported=b)
                            and graph.chain_exists(importer=b, imported=a)), (a, b)  # fmt: skip
