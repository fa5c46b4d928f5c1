"""The evaluation plan: each merged domain evaluates its own model, θ0, the merges and a
sample of the others; unseen domains evaluate every individual; pair sums only against
θ0 and the merges. Unit checks, then a real 7-domain in-process run."""

from __future__ import annotations

from pathlib import Path

import pytest

from silorec.apps.evaluation_plan import evaluation_plan, references
from silorec.engine.local import run_inprocess
from silorec.engine.project import find_project
from silorec.results import load_run
from silorec.results.report import render_report
from silorec.wire.metrics import reference_pairs

TINY = Path(__file__).parent / "scenarios" / "tiny.toml"


def _models(n: int) -> dict[str, tuple]:
    models: dict[str, tuple] = {"theta0": ("base", None, None)}
    for i in range(n):
        models[f"individual:d{i}"] = ("individual", f"d{i}", None)
    models["average"] = ("merge", None, None)
    models["ties"] = ("merge", None, None)
    models["fedavg"] = ("fedavg", None, None)
    return models


def test_each_merged_domain_gets_its_own_a_sample_and_everything_shared() -> None:
    models = _models(10)
    domains = [(f"d{i}", "merged") for i in range(10)] + [("new", "unseen")]
    plan = evaluation_plan(models, domains, cross_domain_models=3, seed=0)
    shared = ["theta0", "average", "ties", "fedavg"]
    samples = []
    for i in range(10):
        labels = plan[f"d{i}"]
        individuals = [x for x in labels if x.startswith("individual:")]
        assert f"individual:d{i}" in individuals and len(individuals) == 4
        assert all(x in labels for x in shared)
        assert labels == [x for x in models if x in labels], "the models' own order"
        samples.append(frozenset(individuals))
    assert len(set(samples)) > 1, "a different sample per domain"
    assert plan["new"] == list(models), "an unseen domain sees every individual model"
    assert plan == evaluation_plan(models, domains, cross_domain_models=3, seed=0)
    assert plan != evaluation_plan(models, domains, cross_domain_models=3, seed=1)
    capped = evaluation_plan(models, domains, 3, seed=0, unseen_source_models=5)
    sources = [x for x in capped["new"] if x.startswith("individual:")]
    assert len(sources) == 5 and all(x in capped["new"] for x in shared)
    assert {k: v for k, v in capped.items() if k != "new"} == {
        k: v for k, v in plan.items() if k != "new"
    }, "the cap is the unseen domains' only"
    total = sum(len(v) for v in plan.values())
    assert total == 10 * (4 + 4) + len(models), "linear: (shared + own + k) per domain"


def test_the_full_matrix_is_one_setting_away() -> None:
    models = _models(5)
    domains = [(f"d{i}", "merged") for i in range(5)]
    assert all(v == list(models) for v in evaluation_plan(models, domains, None, 0).values())
    assert all(v == list(models) for v in evaluation_plan(models, domains, 4, 0).values())
    zero = evaluation_plan(models, domains, 0, 0)
    assert zero["d2"] == ["theta0", "individual:d2", "average", "ties", "fedavg"]


def test_pairs_are_taken_against_the_references_only() -> None:
    models = _models(6)
    labels = list(models)
    refs = references(models, labels)
    assert refs == ["theta0", "average", "ties"]
    pairs = reference_pairs(labels, refs)
    assert all(labels[i] in refs or labels[j] in refs for i, j in pairs)
    n, r = len(labels), len(refs)
    assert len(pairs) == n * (n - 1) // 2 - (n - r) * (n - r - 1) // 2
    assert len(reference_pairs(labels, None)) == n * (n - 1) // 2


@pytest.fixture(scope="module")
def seven_domains(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seven")
    text = TINY.read_text().replace('name = "tiny"', 'name = "seven"', 1)
    head, _, _ = text.partition("[[domains]]")
    head = head.replace(
        "[output]\nplots = true", "[output]\nplots = true\n\n[evaluation]\ncross_domain_models = 2"
    )
    for i in range(7):
        unseen = "unseen = true\n" if i == 6 else ""
        head += (f'[[domains]]\nname = "d{i}"\n{unseen}data = {{ kind = "synthetic", world_seed = 1, '
                 f"n_users = 40, n_items = 30, seed = {i + 1} }}\n\n")  # fmt: skip
    scenario = folder / "seven.toml"
    scenario.write_text(head)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SILOREC_CACHE_DIR", str(folder / "cache"))
        return run_inprocess(scenario, find_project(Path(__file__).parent), out=folder / "run")


def test_a_seven_domain_run_follows_the_plan(seven_domains: Path) -> None:
    results = load_run(seven_domains)
    assert results.status == "completed"
    merged = results.domains("merged")
    assert len(merged) == 6
    for domain in merged:
        models = {r.model for r in results.rows if r.domain == domain and r.split == "test"}
        individuals = {m for m in models if m.startswith("individual:")}
        assert f"individual:{domain}" in individuals and len(individuals) == 3, domain
        assert {"theta0", "average", "ties(density=0.2,lambda=1.0)"} <= models
    unseen = {r.model for r in results.rows if r.domain == "d6" and r.split == "test"}
    assert {f"individual:{d}" for d in merged} <= unseen
    refs = {"theta0"} | {m["label"] for m in results.merges}
    assert results.paired and all(p["a"] in refs or p["b"] in refs for p in results.paired)
    text = render_report(results)
    assert "## Significance" in text and "## Cross-domain matrix" in text
