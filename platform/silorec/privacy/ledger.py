"""A domain's privacy ledger: every release of its data's model, composed, on disk.

The ledger is what makes a budget enforceable: before a node uploads, it asks the
ledger what total ε the upload would bring its domain to, and refuses when that is
over the scenario's ``budget_epsilon``. Each release is recorded (and the file
replaced atomically) *before* the upload leaves the node, so a lost reply can only
make the ledger over-count, never under-count.

Concurrent runs on one node (one ``audit-dir``) share the ledger: :meth:`PrivacyLedger.charge`
reads, checks and records under an exclusive lock on ``<ledger>.lock``, so two uploads
racing for the last of a budget cannot both pass the check.

One file per domain, ``privacy-ledger-<domain>.json``, in the node's audit folder. It
composes every release recorded in it: with a run's own audit folder that is the run;
a node given a fixed ``audit-dir`` keeps one ledger across runs, so its budget holds
for the data's lifetime. The file stores each release's Gaussian parameters (noise
multiplier, sample rate, steps), from which ε is recomputed at any δ; a non-private
release is stored with noise multiplier 0 and makes ε infinite. The ε summary in the
file is written as a number, or ``null`` with ``"unbounded": true`` (JSON has no ∞).
"""

from __future__ import annotations

import fcntl
import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from silorec.privacy.accounting import GaussianSteps, PrivacyAccountingError, epsilon
from silorec.results import now_iso, write_json_atomic
from silorec.scenario.schema import PrivacySettings

LEDGER_FORMAT = "silorec-privacy-ledger/1"
MECHANISMS: tuple[str, ...] = get_args(PrivacySettings.model_fields["mechanism"].annotation)


class LedgerError(ValueError):
    """A ledger file that cannot be read or does not belong to this domain."""


class PrivacyBudgetExceeded(RuntimeError):
    """An upload that would take a domain's total ε over its budget."""

    def __init__(self, domain: str, would_reach: float, budget: float, delta: float) -> None:
        reached = "∞ (a non-private release)" if math.isinf(would_reach) else f"{would_reach:.4g}"
        super().__init__(
            f"domain '{domain}' refuses to upload: this release would bring its privacy "
            f"loss to ε = {reached} at δ = {delta:.3g}, over its budget of ε = {budget:g}"
        )
        self.domain = domain
        self.would_reach = would_reach
        self.budget = budget


@dataclass(frozen=True)
class Release:
    """One upload's privacy cost: its mechanism and Gaussian parameters."""

    run: str
    phase: str
    mechanism: str
    gaussian: GaussianSteps
    recorded_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "phase": self.phase,
            "mechanism": self.mechanism,
            "noise_multiplier": self.gaussian.noise_multiplier,
            "sample_rate": self.gaussian.sample_rate,
            "steps": self.gaussian.steps,
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Release:
        if data["mechanism"] not in MECHANISMS:
            raise ValueError(f"unknown mechanism {data['mechanism']!r}")
        return cls(
            run=str(data["run"]),
            phase=str(data["phase"]),
            mechanism=str(data["mechanism"]),
            gaussian=GaussianSteps(
                float(data["noise_multiplier"]), float(data["sample_rate"]), int(data["steps"])
            ),
            recorded_at=str(data["recorded_at"]),
        )


def ledger_path(directory: Path, domain: str) -> Path:
    """Where ``domain``'s ledger lives inside a node's audit folder."""
    return directory / f"privacy-ledger-{domain}.json"


def epsilon_json(value: float) -> dict[str, Any]:
    """ε as JSON: ``{"epsilon": x, "unbounded": false}`` or ``{"epsilon": null,
    "unbounded": true}`` for ∞."""
    unbounded = math.isinf(value)
    return {"epsilon": None if unbounded else value, "unbounded": unbounded}


class PrivacyLedger:
    """The releases of one domain, with ε at the domain's δ."""

    def __init__(
        self, path: Path, domain: str, delta: float, releases: Sequence[Release] = ()
    ) -> None:
        self.path = path
        self.domain = domain
        self.delta = delta
        self.releases: list[Release] = list(releases)

    @classmethod
    def open(cls, path: Path, domain: str, delta: float) -> PrivacyLedger:
        """The ledger stored at ``path``, or an empty one if there is none yet."""
        if not path.exists():
            return cls(path, domain, delta)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != LEDGER_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {LEDGER_FORMAT!r}")
            releases = [Release.from_json(r) for r in data["releases"]]
        except (OSError, ValueError, KeyError, TypeError, PrivacyAccountingError) as exc:
            raise LedgerError(f"privacy ledger {path} cannot be read: {exc}") from None
        if data.get("domain") != domain:
            raise LedgerError(
                f"privacy ledger {path} belongs to domain {data.get('domain')!r}, not '{domain}'"
            )
        return cls(path, domain, delta, releases)

    @classmethod
    def charge(
        cls, path: Path, domain: str, delta: float, release: Release, budget: float | None
    ) -> PrivacyLedger:
        """Record ``release`` in the ledger at ``path`` if it keeps the domain within
        ``budget`` (raises :class:`PrivacyBudgetExceeded` otherwise), as one step under
        an exclusive file lock: the ledger is re-read inside the lock, so concurrent
        runs of the same node see each other's releases. Charged *before* the upload
        is made: a failure after this can only over-count."""
        with _exclusive(path):
            ledger = cls.open(path, domain, delta)
            ledger.check_budget(release.gaussian, budget)
            ledger.record(release)
        return ledger

    def epsilon(self, extra: Sequence[GaussianSteps] = ()) -> float:
        """Total ε at :attr:`delta` of every recorded release plus ``extra``."""
        return epsilon([*(r.gaussian for r in self.releases), *extra], self.delta)

    def check_budget(self, release: GaussianSteps, budget: float | None) -> float:
        """The total ε a ``release`` would bring the domain to; raises
        :class:`PrivacyBudgetExceeded` when that is over ``budget``."""
        would_reach = self.epsilon([release])
        if budget is not None and would_reach > budget:
            raise PrivacyBudgetExceeded(self.domain, would_reach, budget, self.delta)
        return would_reach

    def record(self, release: Release) -> None:
        """Add ``release`` and rewrite the file atomically."""
        self.releases.append(release)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.path,
            {
                "format": LEDGER_FORMAT,
                "domain": self.domain,
                "delta": self.delta,
                **epsilon_json(self.epsilon()),
                "updated_at": now_iso(),
                "releases": [r.to_json() for r in self.releases],
            },
        )


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (held by this process until the
    block ends; released by the OS if the process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
