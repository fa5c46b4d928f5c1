"""Which domain a node holds, and where its data lives.

Deployment: the SuperNode is started with ``--node-config 'domain="beauty"
data-dir="/data/beauty"'`` (the data owner decides). Simulation and the in-process
engine: Flower gives each simulated node a ``partition-id``, mapped to the scenario's
domains in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from silorec.scenario.schema import DomainSpec, Scenario

DOMAIN_KEY = "domain"
DATA_DIR_KEY = "data-dir"
AUDIT_DIR_KEY = "audit-dir"  # where the node keeps its audit log and privacy ledger
PARTITION_KEY = "partition-id"


class NodeConfigError(ValueError):
    """A node whose configuration does not name a domain of the scenario."""


@dataclass(frozen=True)
class NodeAssignment:
    """The domain a node serves and, in deployment, its own data location."""

    domain: DomainSpec
    data_dir: Path | None


def assign_domain(scenario: Scenario, node_config: Mapping[str, Any]) -> NodeAssignment:
    """Resolve the node's domain from its node config (``domain`` wins over
    ``partition-id``), with an error that says what the node was given."""
    data_dir = node_config.get(DATA_DIR_KEY)
    data_path = Path(str(data_dir)).expanduser() if data_dir else None
    if DOMAIN_KEY in node_config:
        name = str(node_config[DOMAIN_KEY])
        try:
            return NodeAssignment(scenario.domain(name), data_path)
        except KeyError as exc:
            raise NodeConfigError(f"node-config domain={name!r}: {exc.args[0]}") from None
    if PARTITION_KEY in node_config:
        try:
            partition = int(node_config[PARTITION_KEY])
        except (TypeError, ValueError):
            raise NodeConfigError(
                f"partition-id must be an integer, got {node_config[PARTITION_KEY]!r}"
            ) from None
        if not 0 <= partition < len(scenario.domains):
            raise NodeConfigError(
                f"partition-id {partition} has no domain: scenario '{scenario.name}' has "
                f"{len(scenario.domains)} domains (run with num-supernodes="
                f"{len(scenario.domains)})"
            )
        return NodeAssignment(scenario.domains[partition], data_path)
    raise NodeConfigError(
        "node-config names no domain: start the node with "
        '--node-config \'domain="<name>" data-dir="<path>"\''
    )
