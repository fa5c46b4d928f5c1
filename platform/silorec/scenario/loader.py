"""Reading scenario files: TOML in, a validated :class:`Scenario` out, or an error that
names the file and the offending key."""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from silorec.scenario.schema import Scenario

BUILTIN_PREFIX = "builtin:"
_SOURCE_KINDS = {"synthetic", "mergerec", "generic", "amazon-raw"}
DEFAULT_SCENARIO = "quickstart"


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the file and the key."""


def _format_location(loc: tuple[Any, ...]) -> str:
    """``('domains', 1, 'data', 'mergerec', 'pth')`` -> ``domains[1].data.pth``.

    Pydantic puts the tag of a discriminated union (the data source ``kind``) right
    after the union's field; it is noise to a reader and is dropped.
    """
    out = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif previous == "data" and part in _SOURCE_KINDS:
            pass
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    where = _format_location(tuple(error.get("loc", ())))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "missing":
        return f"{where}: required key is missing"
    got = error.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{where}: {error.get('msg', 'invalid value')}{shown}"


def validate_scenario(data: dict[str, Any], source: str) -> Scenario:
    """Validate a parsed scenario; ``source`` names it in error messages."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ScenarioError(f"{source}: invalid scenario:\n  " + "\n  ".join(lines)) from None


def parse_scenario_text(text: str, source: str) -> Scenario:
    """Parse and validate scenario TOML text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    return validate_scenario(data, source)


def builtin_scenario_text(name: str = DEFAULT_SCENARIO) -> str:
    """The TOML text of a scenario embedded in the package (works offline, anywhere)."""
    files = resources.files("silorec") / "scenarios"
    candidate = files / f"{name}.toml"
    if not candidate.is_file():
        known = sorted(
            p.name.removesuffix(".toml") for p in files.iterdir() if p.name.endswith(".toml")
        )
        raise ScenarioError(f"no built-in scenario '{name}' (built-in: {', '.join(known)})")
    return candidate.read_text(encoding="utf-8")


def resolve_scenario_path(ref: str, search_dirs: list[Path] | None = None) -> Path | None:
    """Find the file a scenario reference points at; ``None`` for a built-in one.

    An empty reference or ``builtin:NAME`` is a built-in scenario. A relative path is
    tried against the working directory, then against each of ``search_dirs`` (the
    app's own folder, so that `flwr run` finds `scenarios/x.toml` inside the FAB).
    """
    if not ref or ref.startswith(BUILTIN_PREFIX):
        return None
    path = Path(os.path.expanduser(ref))
    if path.is_absolute():
        if not path.is_file():
            raise ScenarioError(f"{path}: scenario file not found")
        return path
    candidates = [Path.cwd() / path] + [Path(d) / path for d in (search_dirs or [])]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise ScenarioError(f"{ref}: scenario file not found (looked in: {tried})")


def load_scenario_with_text(
    ref: str | Path | None, search_dirs: list[Path] | None = None
) -> tuple[Scenario, str, str]:
    """Load a scenario; returns ``(scenario, toml_text, source_name)``.

    The TOML text travels with results so that a run directory says exactly what ran.
    """
    ref_str = "" if ref is None else str(ref)
    path = resolve_scenario_path(ref_str, search_dirs)
    if path is None:
        name = ref_str.removeprefix(BUILTIN_PREFIX) or DEFAULT_SCENARIO
        text = builtin_scenario_text(name)
        source = f"{BUILTIN_PREFIX}{name}"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read scenario: {exc}") from None
        source = str(path)
    return parse_scenario_text(text, source), text, source


def load_scenario(ref: str | Path | None, search_dirs: list[Path] | None = None) -> Scenario:
    """Load and validate a scenario from a path, ``builtin:NAME``, or ``None``/``""``
    for the default embedded scenario."""
    return load_scenario_with_text(ref, search_dirs)[0]
