"""The detectors again, after the run: ``silorec audit`` replays the identifier and
item-run scans on the strings the logs hold, for every domain whose data is on this
machine (in-process and simulation runs; a deployment's reviewer may lack it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from silorec.data.errors import DataError
from silorec.data.prepare import prepare_domain
from silorec.node.canaries import canaries_for
from silorec.node.guard import DomainScanners
from silorec.scenario.schema import Scenario


def local_scanners(
    scenario: Scenario, base_dir: Path | None = None
) -> Callable[[str], DomainScanners | None]:
    """A lookup ``domain name -> its detectors``, or ``None`` when the domain's data
    cannot be prepared here (each domain is prepared at most once, from the cache
    when it can)."""
    found: dict[str, DomainScanners | None] = {}

    def scanners_for(name: str) -> DomainScanners | None:
        if name not in found:
            found[name] = _prepare(scenario, name, base_dir)
        return found[name]

    return scanners_for


def _prepare(scenario: Scenario, name: str, base_dir: Path | None) -> DomainScanners | None:
    try:
        spec = scenario.domain(name)
        domain = prepare_domain(spec, scenario.data, base_dir=base_dir).domain
    except (KeyError, DataError, OSError):
        return None
    return DomainScanners.for_domain(
        domain, canaries_for(scenario, domain), scenario.audit.min_identifier_length
    )
