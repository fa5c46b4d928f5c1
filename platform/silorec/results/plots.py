"""Plots of a run, drawn with matplotlib's Agg renderer only (never a display).

Figures are built with :class:`matplotlib.figure.Figure` and an Agg canvas directly:
pyplot (and its global backend) is never touched, so importing this module changes
nothing for a user's notebook or GUI.

- ``recall10_by_domain.png``: grouped bars, test Recall@10 of every model on every
  domain (merged domains, unseen domains, then the means), legend outside.
- ``cross_domain_matrix.png``: heatmap of the individual models (trained on) x
  domains (evaluated on), every cell annotated, in-domain cells outlined.
- ``merge_lambdas.png`` (learned merges only): the learned λ per domain, per layer
  group for layer-wise merges, against their starting value.
- ``merge_loss.png`` (learned merges only): the optimisation's loss per step.

Colours are fixed per kind of model, so every run's plots read alike: θ0 dark grey,
FedAvg purple, individual models shades of blue, merges distinct warm/green colours
(orange first; hatched once the palette repeats).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import blended_transform_factory

from silorec.results.io import BAR_PLOT, LAMBDA_PLOT, LOSS_PLOT, MATRIX_PLOT, write_bytes_atomic
from silorec.results.schema import MEAN_MERGED, MEAN_UNSEEN, RunResults, metric_display

DPI = 150

BASE_COLOUR = "#4d4d4d"
FEDAVG_COLOUR = "#8c6bb1"
ORACLE_COLOUR = "#bdbdbd"  # hatched: the Joint oracle breaks isolation
MERGE_COLOURS = (
    "#ff7f0e",  # orange
    "#2ca02c",  # green
    "#d62728",  # red
    "#8c564b",  # brown
    "#e377c2",  # pink
    "#bcbd22",  # olive
    "#17becf",  # cyan
    "#ffbb78",  # light orange
    "#98df8a",  # light green
    "#ff9896",  # light red
)
_HATCHES = ("", "//", "..", "xx", "\\\\")


def model_styles(results: RunResults) -> dict[str, tuple[str, str]]:
    """Model label -> (colour, hatch), fixed per kind (see the module docstring)."""
    from matplotlib import colormaps

    kinds = results.model_kinds()
    individuals = [m for m, k in kinds.items() if k == "individual"]
    blues = colormaps["Blues"]
    n_ind = len(individuals)
    styles: dict[str, tuple[str, str]] = {}
    merge_i = 0
    for model, kind in kinds.items():
        if kind == "base":
            styles[model] = (BASE_COLOUR, "")
        elif kind == "fedavg":
            styles[model] = (FEDAVG_COLOUR, "")
        elif kind == "oracle":
            styles[model] = (ORACLE_COLOUR, "xx")
        elif kind == "individual":
            i = individuals.index(model)
            shade = 0.45 if n_ind == 1 else 0.35 + 0.5 * i / (n_ind - 1)
            r, g, b, _ = blues(shade)
            styles[model] = (f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}", "")
        else:
            colour = MERGE_COLOURS[merge_i % len(MERGE_COLOURS)]
            hatch = _HATCHES[(merge_i // len(MERGE_COLOURS)) % len(_HATCHES)]
            styles[model] = (colour, hatch)
            merge_i += 1
    return styles


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _tick_label(results: RunResults, column: str) -> str:
    if column in results.domains("unseen"):
        return f"{column}\n(unseen)"
    return column


def bar_figure(
    results: RunResults, split: str = "test", metric: str = "recall@10"
) -> Figure | None:
    """Grouped bars of ``metric`` on ``split``: one group per domain (then the means),
    one bar per model. None when no row has that split and metric."""
    table = results.table(split, metric)
    if table.empty or not table.notna().to_numpy().any():
        return None
    models = list(table.index)
    columns = list(table.columns)
    styles = model_styles(results)
    unseen = set(results.domains("unseen"))
    means = {MEAN_MERGED, MEAN_UNSEEN}

    # x positions: a wider gap before the unseen domains and before the means.
    positions: list[float] = []
    x, prev_group = 0.0, None
    for col in columns:
        group = "mean" if col in means else ("unseen" if col in unseen else "merged")
        if prev_group is not None and group != prev_group:
            x += 0.5
        positions.append(x)
        x += 1.0
        prev_group = group

    n = len(models)
    group_width = 0.8
    bar_w = group_width / n
    width = min(30.0, max(6.5, 2.8 + len(columns) * (0.5 + 0.16 * n)))
    # Keep the aspect ratio sane for many domains x models (at most ~3.5 : 1).
    fig = _new_figure(width, max(4.8, min(9.0, width / 3.5)))
    ax = fig.add_subplot(1, 1, 1)
    values = table.to_numpy(dtype=float)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 1.0
    top = top if top > 0 else 1.0
    for i, model in enumerate(models):
        colour, hatch = styles[model]
        xs = [p - group_width / 2 + (i + 0.5) * bar_w for p in positions]
        ys = values[i]
        ok = ~np.isnan(ys)
        ax.bar(
            np.asarray(xs)[ok],
            ys[ok],
            width=bar_w * 0.92,
            color=colour,
            hatch=hatch,
            edgecolor="white" if not hatch else "#333333",
            linewidth=0.4,
            label=model,
        )
    for j in range(len(columns)):
        if np.isnan(values[:, j]).all():
            ax.text(
                positions[j],
                top * 0.03,
                "no results",
                ha="center",
                va="bottom",
                rotation=90,
                fontsize=8,
                color="#777777",
            )
    # Shade the unseen and mean groups, and name the groups above the bars.
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for group, shade, title in (
        ("unseen", "#f2f2f2", "unseen (zero-shot)"),
        ("mean", "#fbf3e6", "means"),
        ("merged", None, "merged domains"),
    ):
        idx = [
            j
            for j, c in enumerate(columns)
            if (group == "mean" and c in means)
            or (group == "unseen" and c in unseen)
            or (group == "merged" and c not in means and c not in unseen)
        ]
        if not idx:
            continue
        lo, hi = positions[idx[0]] - 0.5, positions[idx[-1]] + 0.5
        if shade:
            ax.axvspan(lo, hi, color=shade, zorder=0, linewidth=0)
        ax.text(
            (lo + hi) / 2,
            0.985,
            title,
            transform=trans,
            ha="center",
            va="top",
            fontsize=8,
            color="#555555",
        )
    ax.set_xticks(positions)
    rotate = len(columns) > 8 or max(len(c) for c in columns) > 14
    ax.set_xticklabels(
        [_tick_label(results, c) for c in columns],
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=9,
    )
    ax.set_xlim(positions[0] - 0.6, positions[-1] + 0.6)
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel(metric_display(metric))
    ax.set_title(f"{metric_display(metric)} on each domain ({split} split)")
    ax.grid(axis="y", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles = [
        Patch(
            facecolor=styles[m][0],
            hatch=styles[m][1],
            edgecolor="#333333" if styles[m][1] else styles[m][0],
            label=m,
        )
        for m in models
    ]
    ax.legend(
        handles=handles,
        title="model",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8,
        title_fontsize=9,
        ncol=1 if n <= 18 else 2,
    )
    return fig


def matrix_figure(
    results: RunResults, split: str = "test", metric: str = "recall@10"
) -> Figure | None:
    """Heatmap of the individual models (rows) evaluated on every domain (columns),
    each cell annotated, in-domain cells outlined. None without individual models."""
    matrix = results.cross_domain_matrix(split, metric)
    if matrix.empty or not matrix.notna().to_numpy().any():
        return None
    from matplotlib import colormaps

    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    width = max(4.8, 2.6 + 1.15 * n_cols)
    height = max(3.0, 1.7 + 0.62 * n_rows)
    fig = _new_figure(width, height)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["YlGnBu"].with_extremes(bad="#eeeeee")
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if math.isclose(lo, hi):
        lo, hi = lo - 0.5 * abs(lo or 1.0), hi + 0.5 * abs(hi or 1.0)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    fontsize = 9 if n_cols <= 8 else 7
    for i in range(n_rows):
        for j in range(n_cols):
            v = values[i, j]
            if math.isnan(v):
                ax.text(j, i, "—", ha="center", va="center", fontsize=fontsize, color="#777777")
                continue
            r, g, b, _ = to_rgba(cmap((v - lo) / (hi - lo)))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(
                j,
                i,
                f"{v:.4f}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "black",
            )
    columns = list(matrix.columns)
    for i, source in enumerate(matrix.index):
        if source in columns:
            j = columns.index(source)
            ax.add_patch(
                Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=2.0)
            )
    ax.set_xticks(range(n_cols))
    rotate = n_cols > 8 or max(len(c) for c in columns) > 12
    ax.set_xticklabels(
        [_tick_label(results, c) for c in columns],
        rotation=30 if rotate else 0,
        ha="right" if rotate else "center",
        fontsize=9,
    )
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels(list(matrix.index), fontsize=9)
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained on (individual model)")
    ax.set_title(
        f"Cross-domain {metric_display(metric)} ({split}); in-domain outlined", fontsize=10
    )
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label(metric_display(metric))
    return fig


def figure_png(fig: Figure, *, dpi: int = DPI) -> bytes:
    """The figure as PNG bytes (tight bounding box, white background)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def learned_merges(results: RunResults) -> list[dict]:
    """The merges that recorded learned coefficients, in run order."""
    return [m for m in results.merges if (m.get("diagnostics") or {}).get("lambdas")]


def lambdas_figure(results: RunResults) -> Figure | None:
    """One panel per learned merge: λ per domain (bars), one bar group per layer
    group, the starting λ as a dashed line."""
    merges = learned_merges(results)
    if not merges:
        return None
    fig = _new_figure(4.2 * len(merges), 3.4)
    axes = fig.subplots(1, len(merges), squeeze=False)[0]
    for ax, merge in zip(axes, merges, strict=True):
        diag = merge["diagnostics"]
        groups = list(diag["lambdas"])
        domains = list(merge.get("domains") or [])
        values = np.array([diag["lambdas"][g] for g in groups])  # [G, K]
        width = 0.8 / max(values.shape[1], 1)
        for k in range(values.shape[1]):
            label = domains[k] if k < len(domains) else f"model {k}"
            ax.bar(np.arange(len(groups)) + (k - (values.shape[1] - 1) / 2) * width,
                   values[:, k], width, label=label)  # fmt: skip
        start = diag["lambda_trajectory"][0]["lambdas"] if diag.get("lambda_trajectory") else None
        if start:
            ax.axhline(float(np.mean(list(start.values()))), ls="--", lw=1, c="grey",
                       label="start")  # fmt: skip
        ax.set_xticks(np.arange(len(groups)), groups, fontsize=8)
        ax.set_title(str(merge.get("label")), fontsize=8)
        ax.set_ylabel("λ")
        ax.legend(fontsize=7)
    fig.suptitle("Learned merge coefficients per domain", fontsize=10)
    return fig


def merge_loss_figure(results: RunResults) -> Figure | None:
    """The loss of every learned merge per optimisation step (raw and smoothed)."""
    merges = learned_merges(results)
    if not merges:
        return None
    fig = _new_figure(6.5, 3.4)
    ax = fig.subplots()
    for i, merge in enumerate(merges):
        curve = np.asarray(merge["diagnostics"].get("loss_curve") or [], dtype=float)
        if not len(curve):
            continue
        colour = MERGE_COLOURS[i % len(MERGE_COLOURS)]
        steps = np.arange(1, len(curve) + 1)
        ax.plot(steps, curve, c=colour, alpha=0.25, lw=0.8)
        window = max(1, len(curve) // 25)
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, c=colour, lw=1.6, label=str(merge.get("label")))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per batch; bold: moving mean)")
    ax.legend(fontsize=7)
    ax.set_title("Learned merges: optimisation loss", fontsize=10)
    return fig


def render_plots(results: RunResults, *, dpi: int = DPI) -> dict[str, bytes | None]:
    """File name -> PNG bytes for every standard plot (None: nothing to plot).
    The result plots are of test Recall@10, as their file names say."""
    out: dict[str, bytes | None] = {}
    for name, build in ((BAR_PLOT, bar_figure), (MATRIX_PLOT, matrix_figure)):
        fig = build(results, "test", "recall@10")
        out[name] = None if fig is None else figure_png(fig, dpi=dpi)
    for name, build_learned in ((LAMBDA_PLOT, lambdas_figure), (LOSS_PLOT, merge_loss_figure)):
        fig = build_learned(results)
        out[name] = None if fig is None else figure_png(fig, dpi=dpi)
    return out


def write_plots(
    results: RunResults, folder: str | os.PathLike[str], *, dpi: int = DPI
) -> list[Path]:
    """Render the standard plots into ``folder`` (atomically, one file at a time) and
    return the paths written; a plot with nothing to show is not written."""
    target = Path(folder)
    return [
        write_bytes_atomic(target / name, data)
        for name, data in render_plots(results, dpi=dpi).items()
        if data is not None
    ]
