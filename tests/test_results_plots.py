"""silorec.results.plots: PNGs exist, are valid and plausibly sized; Agg only."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

from results_example import example_results, metrics_from_recall10

from silorec.results import ResultRow, RunResults
from silorec.results.plots import (
    BASE_COLOUR,
    MERGE_COLOURS,
    bar_figure,
    matrix_figure,
    model_styles,
    render_plots,
    write_plots,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_standard_plots_are_valid_pngs(tmp_path: Path) -> None:
    paths = write_plots(example_results(), tmp_path)
    assert [p.name for p in paths] == ["recall10_by_domain.png", "cross_domain_matrix.png"]
    for p in paths:
        w, h = png_size(p)
        assert 600 <= w <= 6000 and 300 <= h <= 3000, (p.name, w, h)
        assert 10_000 < p.stat().st_size < 2_000_000
    bar_w, bar_h = png_size(paths[0])
    assert bar_w > bar_h  # a wide chart with the legend on the right


def test_pngs_decode(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    for p in write_plots(example_results(), tmp_path):
        pixels = mpimg.imread(p)
        w, h = png_size(p)
        assert pixels.shape[:2] == (h, w)
        assert pixels.std() > 0.05  # not a blank image
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with matplotlib
        return
    with Image.open(tmp_path / "cross_domain_matrix.png") as img:
        img.verify()


def test_single_domain_and_single_model(tmp_path: Path) -> None:
    r = RunResults(
        run_id="one",
        scenario_name="one",
        rows=[
            ResultRow(
                model="individual:a",
                kind="individual",
                source="a",
                domain="a",
                domain_role="merged",
                split="test",
                n_users=5,
                metrics=metrics_from_recall10(0.1),
            )
        ],
    )
    paths = write_plots(r, tmp_path)
    assert len(paths) == 2
    for p in paths:
        w, h = png_size(p)
        assert w >= 300 and h >= 200


def test_failed_domain_still_plots(tmp_path: Path) -> None:
    paths = write_plots(example_results(failed_domain="toys"), tmp_path)
    assert len(paths) == 2


def test_nothing_to_plot_gives_none() -> None:
    empty = RunResults(run_id="e", scenario_name="e")
    assert bar_figure(empty) is None
    assert matrix_figure(empty) is None
    nothing = dict.fromkeys(
        ["recall10_by_domain.png", "cross_domain_matrix.png", "merge_lambdas.png", "merge_loss.png"]
    )
    assert render_plots(empty) == nothing
    only_valid = example_results()
    only_valid.rows = [r for r in only_valid.rows if r.split == "valid"]
    assert render_plots(only_valid) == nothing
    assert bar_figure(only_valid, split="valid") is not None


def test_colours_are_fixed_per_kind() -> None:
    styles = model_styles(example_results())
    assert styles["theta0"] == (BASE_COLOUR, "")
    assert styles["average"] == (MERGE_COLOURS[0], "")
    assert styles["task_arithmetic(lambda=0.3)"] == (MERGE_COLOURS[1], "")
    blues = [styles[f"individual:{d}"][0] for d in ("beauty", "sports", "toys")]
    assert len(set(blues)) == 3
    assert all(b.startswith("#") and len(b) == 7 for b in blues)


def test_many_merges_cycle_colours_with_hatches() -> None:
    rows = [
        ResultRow(
            model=f"m{i}",
            kind="merge",
            domain="a",
            domain_role="merged",
            split="test",
            n_users=1,
            metrics={"recall@10": 0.01 * (i + 1)},
        )
        for i in range(len(MERGE_COLOURS) + 2)
    ]
    styles = model_styles(RunResults(run_id="r", scenario_name="s", rows=rows))
    assert len(set(styles.values())) == len(rows)
    assert bar_figure(RunResults(run_id="r", scenario_name="s", rows=rows)) is not None


def test_plotting_never_touches_pyplot_or_a_display(tmp_path: Path) -> None:
    code = (
        "import sys, matplotlib\n"
        "from results_example import example_results\n"
        "from silorec.results.plots import write_plots\n"
        f"write_plots(example_results(), {str(tmp_path)!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
    )
    # A DISPLAY that does not exist: any attempt to open a window would fail.
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["DISPLAY"] = ":99"
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "recall10_by_domain.png").is_file()


def test_learned_merges_get_lambda_and_loss_plots() -> None:
    from silorec.results.plots import lambdas_figure, merge_loss_figure

    results = example_results()
    assert lambdas_figure(results) is None and merge_loss_figure(results) is None
    results.merges.append({
        "label": "mergerec", "method": "mergerec", "params": {}, "domains": ["a", "b"],
        "diagnostics": {"granularity": "layer", "init": "ties", "groups": ["layer 0", "others"],
                        "lambdas": {"layer 0": [0.9, 1.1], "others": [1.0, 0.8]},
                        "loss_curve": [3.0, 2.5, 2.0, 1.9],
                        "lambda_trajectory": [{"step": 0, "lambdas": {"layer 0": [1.0, 1.0]}}]},
    })  # fmt: skip
    pngs = render_plots(results)
    for name in ("merge_lambdas.png", "merge_loss.png"):
        assert pngs[name] is not None and pngs[name].startswith(b"\x89PNG")
