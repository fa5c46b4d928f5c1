"""The per-domain privacy ledger: composition across releases, persistence, the
infinite ε of a non-private release, and the hard budget."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from silorec.privacy import (
    GaussianSteps,
    LedgerError,
    PrivacyBudgetExceeded,
    PrivacyLedger,
    Release,
    epsilon,
    ledger_path,
)

DELTA = 1e-4


def release(phase: str, sigma: float = 1.0, rate: float = 0.05, steps: int = 40) -> Release:
    mechanism = "none" if sigma == 0 else "dp-sgd"
    return Release("run-1", phase, mechanism, GaussianSteps(sigma, rate, steps),
                   "2026-01-01T00:00:00+00:00")  # fmt: skip


def test_the_ledger_composes_every_release(tmp_path: Path) -> None:
    ledger = PrivacyLedger.open(ledger_path(tmp_path, "books"), "books", DELTA)
    assert ledger.epsilon() == 0.0
    releases = [release("warm-up-1"), release("warm-up-2"), release("fine-tune", steps=200)]
    for r in releases:
        ledger.record(r)
    expected = epsilon([r.gaussian for r in releases], DELTA)
    assert ledger.epsilon() == pytest.approx(expected)
    assert ledger.epsilon() > epsilon([releases[-1].gaussian], DELTA)


def test_the_ledger_persists_and_reloads(tmp_path: Path) -> None:
    path = ledger_path(tmp_path / "audit", "books")
    assert path.name == "privacy-ledger-books.json"
    ledger = PrivacyLedger.open(path, "books", DELTA)
    ledger.record(release("fine-tune"))
    ledger.record(release("fedavg-1", sigma=2.0, rate=1.0, steps=1))
    data = json.loads(path.read_text())
    assert data["format"] == "silorec-privacy-ledger/1" and data["domain"] == "books"
    assert data["epsilon"] == pytest.approx(ledger.epsilon()) and data["unbounded"] is False
    assert [r["phase"] for r in data["releases"]] == ["fine-tune", "fedavg-1"]
    assert data["releases"][1] == {
        "run": "run-1", "phase": "fedavg-1", "mechanism": "dp-sgd", "noise_multiplier": 2.0,
        "sample_rate": 1.0, "steps": 1, "recorded_at": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    reloaded = PrivacyLedger.open(path, "books", DELTA)
    assert reloaded.releases == ledger.releases
    assert reloaded.epsilon() == pytest.approx(ledger.epsilon())
    # ε is recomputed from the stored RDP parameters at any δ.
    assert PrivacyLedger.open(path, "books", 1e-6).epsilon() > ledger.epsilon()
    assert not [p for p in path.parent.iterdir() if p != path]  # no temporary left


def test_a_release_without_noise_makes_epsilon_infinite_in_json_terms(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "books")
    ledger = PrivacyLedger.open(path, "books", DELTA)
    ledger.record(release("fine-tune"))
    ledger.record(release("fedavg-1", sigma=0.0, rate=1.0, steps=1))
    assert ledger.epsilon() == math.inf
    data = json.loads(path.read_text())  # strict JSON: no Infinity token
    assert data["epsilon"] is None and data["unbounded"] is True
    assert "Infinity" not in path.read_text()


def test_an_upload_over_budget_is_refused_with_domain_epsilon_and_budget(tmp_path: Path):
    ledger = PrivacyLedger.open(ledger_path(tmp_path, "books"), "books", DELTA)
    first = release("fine-tune")
    within = ledger.check_budget(first.gaussian, budget=10.0)
    assert within == pytest.approx(epsilon([first.gaussian], DELTA))
    ledger.record(first)
    second = release("fedavg-1")
    would_reach = ledger.epsilon([second.gaussian])
    with pytest.raises(PrivacyBudgetExceeded) as refused:
        ledger.check_budget(second.gaussian, budget=within + 0.01)
    message = str(refused.value)
    assert "domain 'books' refuses to upload" in message
    assert f"ε = {would_reach:.4g}" in message and f"budget of ε = {within + 0.01:g}" in message
    assert refused.value.would_reach == pytest.approx(would_reach)
    assert len(ledger.releases) == 1  # a refused release is not recorded
    assert ledger.check_budget(second.gaussian, budget=None) == pytest.approx(would_reach)


def test_no_noise_is_refused_under_any_budget(tmp_path: Path) -> None:
    ledger = PrivacyLedger.open(ledger_path(tmp_path, "books"), "books", DELTA)
    with pytest.raises(PrivacyBudgetExceeded, match="∞"):
        ledger.check_budget(release("fine-tune", sigma=0.0).gaussian, budget=1000.0)


def test_unreadable_or_foreign_ledgers_are_clear_errors(tmp_path: Path) -> None:
    path = ledger_path(tmp_path, "books")
    path.write_text("{not json")
    with pytest.raises(LedgerError, match=f"privacy ledger {path} cannot be read"):
        PrivacyLedger.open(path, "books", DELTA)
    ledger = PrivacyLedger(path, "books", DELTA)
    ledger.record(release("fine-tune"))
    with pytest.raises(LedgerError, match="belongs to domain 'books', not 'toys'"):
        PrivacyLedger.open(path, "toys", DELTA)
    data = json.loads(path.read_text())
    data["releases"][0]["mechanism"] = "laplace"
    path.write_text(json.dumps(data))
    with pytest.raises(LedgerError, match="unknown mechanism 'laplace'"):
        PrivacyLedger.open(path, "books", DELTA)


def _charge_after_barrier(path: str, budget: float, barrier, results) -> None:  # noqa: ANN001
    """Child process: wait for the other, then try to charge one release. The budget
    check is slowed down so that, without the ledger's lock, both children would read
    the same ledger and both pass."""
    import time

    original = PrivacyLedger.check_budget

    def slow_check(self, release_steps, limit):  # noqa: ANN001, ANN202
        value = original(self, release_steps, limit)
        time.sleep(0.5)
        return value

    PrivacyLedger.check_budget = slow_check  # type: ignore[method-assign]
    barrier.wait()
    try:
        PrivacyLedger.charge(Path(path), "books", DELTA, release("race"), budget)
        results.put("won")
    except PrivacyBudgetExceeded:
        results.put("refused")


def test_two_runs_racing_for_the_last_budget_cannot_both_win(tmp_path: Path) -> None:
    import multiprocessing

    path = ledger_path(tmp_path, "books")
    ledger = PrivacyLedger.open(path, "books", DELTA)
    ledger.record(release("fine-tune"))
    two = epsilon([release("a").gaussian] * 2, DELTA)
    three = epsilon([release("a").gaussian] * 3, DELTA)
    budget = (two + three) / 2  # room for exactly one more release
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_charge_after_barrier, args=(str(path), budget, barrier, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    outcomes = sorted(results.get(timeout=5) for _ in children)
    assert outcomes == ["refused", "won"]
    assert len(PrivacyLedger.open(path, "books", DELTA).releases) == 2
