"""The run config keys silorec reads (``[tool.flwr.app.config]`` in pyproject.toml,
overridable with ``flwr run --run-config``), shared by both apps."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from silorec.scenario import Scenario, load_scenario_with_text

SCENARIO = "scenario"  # path (relative to cwd or the app folder), builtin:NAME, or ""
OUT_DIR = "out-dir"  # parent folder of run directories
RUN_DIR = "run-dir"  # exact run directory ("" = a new one under out-dir)
ENGINE = "engine"  # how the run is executed, recorded in results
INPROCESS_ENGINE = "inprocess"  # ENGINE's value under silorec.engine.local (silorec run)
SEED = "seed"  # overrides the scenario's seeds (run, training, θ0) when >= 0
#: Which node holds which domain, ``"alpha=1001 beta=1002"``, set by an engine that
#: knows (the in-process engine); a deployment binds with ``federation.node_ids``.
NODE_BINDING = "node-binding"
#: A run folder written by ``silorec merge add|remove``: the server trains and merges
#: nothing, it evaluates that folder's models on the nodes (one evaluation round) and
#: writes them, evaluated, as this run ("" = an ordinary run).
EVALUATE_FROM = "evaluate-from"

#: Context-state record where the ServerApp leaves facts for whoever started it
#: (the in-process engine reads the run directory from it).
STATE_RECORD = "silorec"
STATE_RUN_DIR = "run_dir"


def binding_text(binding: Mapping[str, int]) -> str:
    """``{"alpha": 1001}`` -> ``"alpha=1001"`` (run config values are scalars)."""
    return " ".join(f"{domain}={node_id}" for domain, node_id in binding.items())


def node_binding(run_config: Mapping[str, Any]) -> dict[str, int]:
    """The run config's domain -> node id binding (empty when it has none)."""
    out: dict[str, int] = {}
    for pair in str(run_config.get(NODE_BINDING, "") or "").split():
        domain, _, node_id = pair.rpartition("=")
        out[domain] = int(node_id)
    return out


def scenario_from_run_config(
    run_config: Mapping[str, Any], app_dir: Path
) -> tuple[Scenario, str, str]:
    """Load the run's scenario: ``(scenario, toml_text, source)``, with the run
    config's ``seed`` applied (both apps read it, so nodes and server agree).

    Relative paths are tried against the working directory, then the app folder (a
    Flower app bundle installed under ``$FLWR_HOME/apps`` carries ``scenarios/``).
    """
    scenario, text, source = load_scenario_with_text(str(run_config.get(SCENARIO, "")), [app_dir])
    seed = int(run_config.get(SEED, -1))
    if seed >= 0:
        scenario = scenario.with_seed(seed)
    return scenario, text, source
