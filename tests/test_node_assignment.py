"""Which domain a node serves: by name (deployment) or by partition id (simulation)."""

from __future__ import annotations

from pathlib import Path

import pytest

from silorec.node.assignment import NodeAssignment, NodeConfigError, assign_domain
from silorec.scenario import Scenario, parse_scenario_text

SCENARIO_TOML = """
name = "three"

[[domains]]
name = "books"
data = { kind = "synthetic", seed = 1 }

[[domains]]
name = "toys"
data = { kind = "synthetic", seed = 2 }

[[domains]]
name = "kitchen"
unseen = true
data = { kind = "synthetic", seed = 3 }
"""


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return parse_scenario_text(SCENARIO_TOML, "three.toml")


def test_domain_by_name(scenario: Scenario) -> None:
    assignment = assign_domain(scenario, {"domain": "toys"})
    assert isinstance(assignment, NodeAssignment)
    assert assignment.domain is scenario.domains[1]
    assert assignment.data_dir is None


def test_unseen_domains_can_be_served(scenario: Scenario) -> None:
    assert assign_domain(scenario, {"domain": "kitchen"}).domain.unseen


@pytest.mark.parametrize(("partition", "name"), [(0, "books"), (1, "toys"), (2, "kitchen")])
def test_domain_by_partition_id_in_scenario_order(
    scenario: Scenario, partition: int, name: str
) -> None:
    assert assign_domain(scenario, {"partition-id": partition}).domain.name == name


def test_partition_id_given_as_text(scenario: Scenario) -> None:
    assert assign_domain(scenario, {"partition-id": "2"}).domain.name == "kitchen"


def test_domain_wins_over_partition_id(scenario: Scenario) -> None:
    assignment = assign_domain(scenario, {"partition-id": 0, "domain": "kitchen"})
    assert assignment.domain.name == "kitchen"


def test_data_dir(scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = assign_domain(scenario, {"domain": "books", "data-dir": str(tmp_path)})
    assert given.data_dir == tmp_path
    monkeypatch.setenv("HOME", str(tmp_path))
    home = assign_domain(scenario, {"partition-id": 1, "data-dir": "~/data/toys"})
    assert home.data_dir == tmp_path / "data" / "toys"
    assert assign_domain(scenario, {"domain": "books", "data-dir": ""}).data_dir is None


def test_unknown_domain_lists_the_known_ones(scenario: Scenario) -> None:
    with pytest.raises(NodeConfigError) as info:
        assign_domain(scenario, {"domain": "garden", "data-dir": "/data"})
    message = str(info.value)
    assert "domain='garden'" in message
    assert "scenario 'three' has no domain 'garden'" in message
    assert "known: books, toys, kitchen" in message


@pytest.mark.parametrize("partition", [3, 7, -1])
def test_partition_out_of_range_says_how_many_domains(scenario: Scenario, partition: int) -> None:
    with pytest.raises(NodeConfigError) as info:
        assign_domain(scenario, {"partition-id": partition})
    assert str(info.value) == (
        f"partition-id {partition} has no domain: scenario 'three' has 3 domains "
        "(run with num-supernodes=3)"
    )


def test_no_domain_key_says_how_to_start_the_node(scenario: Scenario) -> None:
    with pytest.raises(NodeConfigError) as info:
        assign_domain(scenario, {"data-dir": "/data/books"})
    message = str(info.value)
    assert "node-config names no domain" in message
    assert '--node-config \'domain="<name>" data-dir="<path>"\'' in message
    assert isinstance(info.value, ValueError)
