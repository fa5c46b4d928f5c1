"""The report's privacy section: ε per domain (∞ for a release without noise, 0 for
an unseen domain), δ, noise, uploads and the membership-inference AUC."""

from __future__ import annotations

from results_example import example_results

from silorec.results.report import render_report
from silorec.results.schema import RunResults


def with_privacy(results: RunResults, mechanism: str, infos: dict[str, dict]) -> RunResults:
    scenario = {**results.scenario, "privacy": {"mechanism": mechanism, "max_grad_norm": 1.0,
                                                "clip_norm": 0.5, "budget_epsilon": 8.0}}  # fmt: skip
    nodes = [n.model_copy(update={"info": {**n.info, **infos.get(n.domain, {})}})
             for n in results.nodes]  # fmt: skip
    return results.model_copy(update={"scenario": scenario, "nodes": nodes})


def privacy_section(results: RunResults) -> str:
    report = render_report(results)
    start = report.index("## Privacy")
    return report[start : report.index("\n## ", start + 1)]


def test_no_privacy_facts_no_section() -> None:
    assert "## Privacy" not in render_report(example_results())


def test_epsilon_delta_noise_and_attack_per_domain() -> None:
    dp = {"privacy_epsilon": 3.98765, "privacy_delta": 1 / 6000, "privacy_noise_multiplier": 0.84,
          "privacy_releases": 2.0, "mia_auc": 0.5123, "mia_members": 5400.0,
          "mia_non_members": 600.0}  # fmt: skip
    results = with_privacy(example_results(), "gaussian", {
        "beauty": dp,
        "sports": {"privacy_epsilon_unbounded": 1.0, "privacy_delta": 1e-4, "privacy_releases": 1.0},
        "office": {"privacy_epsilon": 0.0, "privacy_delta": 1e-4, "privacy_releases": 0.0},
    })  # fmt: skip
    section = privacy_section(results)
    assert "Gaussian mechanism on the uploaded task vector (clipped to L2 norm 0.5, so its " \
        "sensitivity is 1" in section  # fmt: skip
    assert "ε ≤ 8 per domain" in section
    assert "| beauty | merged | 3.988 | 0.00017 | 0.840 | 2 | 0.512 (5400 / 600) |" in section
    assert "| sports | merged | ∞ | 0.0001 | — | 1 | — |" in section
    assert "| toys | merged | — | — | — | — | — |" in section  # reported nothing
    assert "| office | unseen | 0.000 |" in section
