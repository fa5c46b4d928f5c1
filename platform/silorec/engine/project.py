"""The Flower app project on disk: where its ServerApp and ClientApp are and its run
config defaults, read from ``pyproject.toml`` exactly as ``flwr run`` reads them."""

from __future__ import annotations

import importlib
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ProjectError(ValueError):
    """No usable Flower app project at the given place."""


@dataclass(frozen=True)
class FlowerProject:
    """A folder with a ``pyproject.toml`` declaring ``[tool.flwr.app.components]``."""

    root: Path
    serverapp: str
    clientapp: str
    run_config: dict[str, Any]

    def load(self, reference: str) -> Any:
        """Import ``module:attribute`` with the project folder first on ``sys.path``
        (what Flower does with an installed app bundle)."""
        module_name, _, attribute = reference.partition(":")
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ProjectError(f"{self.root}: cannot import '{module_name}': {exc}") from exc
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise ProjectError(f"{self.root}: '{module_name}' has no '{attribute}'") from None


def find_project(start: Path | None = None) -> FlowerProject:
    """The Flower app project at ``start`` or its nearest parent holding one."""
    here = (start or Path.cwd()).resolve()
    for folder in [here, *here.parents]:
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ProjectError(f"{pyproject}: not valid TOML: {exc}") from None
            app = data.get("tool", {}).get("flwr", {}).get("app", {})
            components = app.get("components", {})
            if "serverapp" in components and "clientapp" in components:
                return FlowerProject(
                    root=folder,
                    serverapp=str(components["serverapp"]),
                    clientapp=str(components["clientapp"]),
                    run_config=dict(app.get("config", {})),
                )
    raise ProjectError(
        f"no Flower app project (pyproject.toml with [tool.flwr.app.components]) at "
        f"{here} or above: run from the silorec project folder or pass --project DIR"
    )
