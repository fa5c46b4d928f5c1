"""benchmarks/bench_merge_quality.py: the merge-quality table and its targets, checked
on the hand-made example run (numbers worked out by hand from tests/results_example)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from results_example import example_results

from silorec.results import write_run

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_merge_quality.py"
spec = importlib.util.spec_from_file_location("bench_merge_quality", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

TA = "task_arithmetic(lambda=0.3)"


def runs(n: int = 3) -> list:
    out = []
    for seed in range(n):
        run = example_results()
        run.seeds = {"scenario": seed}
        run.run_id = f"seed-{seed}"
        out.append(run)
    return out


def test_per_seed_figures_by_hand() -> None:
    figures = bench.per_seed_figures(example_results())
    ta, average = figures[TA], figures["average"]
    assert ta["recall@10"] == pytest.approx(0.06)
    # θ0 0.035, specialists (0.08 + 0.07 + 0.075) / 3 = 0.075
    assert ta["gain_kept"] == pytest.approx((0.06 - 0.035) / (0.075 - 0.035))
    assert ta["vs_tuned"] == pytest.approx(1.0)  # TA is the λ-tuned best on validation
    assert average["vs_tuned"] == pytest.approx(0.055 / 0.06)
    assert ta["vs_average"] == pytest.approx(0.06 / 0.055)
    assert ta["vs_specialists"] == pytest.approx(0.06 / 0.075)
    assert ta["office_vs_theta0"] == pytest.approx(0.024 / 0.02)
    # best single source on office, chosen on validation: individual:sports (0.028)
    assert ta["office_vs_source"] == pytest.approx(0.024 / 0.028)
    assert ta["seconds"] >= 0


def test_table_and_targets(tmp_path: Path) -> None:
    for run in runs():
        write_run(run, tmp_path / run.run_id, plots=False)
    loaded = bench.load_runs([tmp_path])
    assert len(loaded) == 3
    text = bench.render(loaded, bench.summarise(loaded))
    assert f"| `{TA}` | 0.0600 ± 0.0000 |" in text
    assert f"## Targets for the best merge on validation: `{TA}`" in text
    assert "| ÷ best λ-tuned training-free | 1.1 | 1.000 ± 0.000 | MISS by 0.100 |" in text
    assert "| gain kept | 0.5 | 0.625 ± 0.000 | PASS |" in text
    assert "| office ÷ θ0 | 1 | 1.200 ± 0.000 | PASS |" in text
    assert "| office ÷ best single source | 2 | 0.857 ± 0.000 | MISS by 1.143 |" in text


def test_a_folder_without_runs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="neither a run directory nor a folder of seed-"):
        bench.load_runs([tmp_path])
