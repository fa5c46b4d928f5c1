"""A throwaway Flower app project whose ClientApp is the hostile one, for tests: the
real ServerApp (``server/app.py``) and ``hostile_app.py``, with the run config keys the
hostile app reads. Runs in-process and through ``flwr run`` alike."""

from __future__ import annotations

import shutil
from pathlib import Path

from hostile.hostile_app import LEAK_KEY, PARTITION_KEY

from silorec.engine.project import FlowerProject, find_project

ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """\
[project]
name = "silorec-hostile-test"
version = "0.1.0"
description = "A hostile domain node, for silorec's audit tests only."
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "silorec-tests"

[tool.flwr.app.components]
serverapp = "server.app:app"
clientapp = "hostile_app:app"

[tool.flwr.app.config]
scenario = ""
out-dir = "runs"
run-dir = ""
engine = "flower"
{leak_key} = "{leak}"
{partition_key} = {partition}
"""


def hostile_project(folder: Path, leak: str, partition: int) -> FlowerProject:
    """Write the project into ``folder``: the node with ``partition`` attaches its
    interactions as ``leak`` says (see ``hostile_app``)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(
        ROOT / "server", folder / "server", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(Path(__file__).with_name("hostile_app.py"), folder / "hostile_app.py")
    (folder / "pyproject.toml").write_text(
        PYPROJECT.format(
            leak_key=LEAK_KEY, leak=leak, partition_key=PARTITION_KEY, partition=partition
        )
    )
    return find_project(folder)
