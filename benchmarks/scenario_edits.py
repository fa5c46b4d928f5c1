"""Variants of a shipped scenario for the benchmarks: the TOML parsed, keys set, and
every domain's users capped, so that each benchmark states only what it changes."""

from __future__ import annotations

import tomllib
from typing import Any


def edited_scenario(
    text: str, overrides: dict[str, Any], *, max_users: int | None = None
) -> dict[str, Any]:
    """``text`` (a scenario's TOML) with ``overrides`` applied, as TOML data.

    ``overrides`` maps ``"section.key"`` to a value, or a section name to a whole
    table (which replaces it); ``max_users`` caps every domain's users.
    """
    data = tomllib.loads(text)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if key:
            data.setdefault(section, {})[key] = value
        else:
            data[section] = value
    if max_users is not None:
        for domain in data.get("domains", []):
            domain.setdefault("subsample", {})["max_users"] = max_users
    return data
