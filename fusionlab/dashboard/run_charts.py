"""Plotly figures of the Train and Runs pages: training curves, fusion weights and confusion matrices.

They follow the look of :mod:`fusionlab.dashboard.charts`: a left-aligned title, axis titles on every axis,
transparent backgrounds and translucent grey grid lines (so they read on Streamlit's light and dark themes),
fusion weights through the one heatmap of :func:`~fusionlab.dashboard.charts.weight_heatmap` with layer 1 (nearest the input) at the bottom, and every adapter
in its :func:`~fusionlab.dashboard.colors.adapter_color`. A builder given nothing to draw returns ``None``
rather than an empty figure, so the page can say why there is no chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fusionlab.dashboard.charts import NEUTRAL, adapter_tick, style_figure, weight_heatmap, weight_hover
from fusionlab.dashboard.colors import adapter_color
from fusionlab.metrics import metric_label, metric_range

if TYPE_CHECKING:
    from fusionlab.dashboard.runs_view import CurveMarks

KEPT_LABEL = "kept (best on the selection split)"
"""What the vertical line at a run's kept step says: the weights it saved are those of that evaluation."""

COUNT_SCALE = "Blues"
RUN_COLORS = (
    "#1F77B4",
    "#FF7F0E",
    "#2CA02C",
    "#D62728",
    "#9467BD",
    "#8C564B",
    "#E377C2",
    "#17BECF",
    "#BCBD22",
    "#7F7F7F",
)
"""One colour per overlaid run (Plotly's category-10 order); the Runs page overlays at most this many."""

MAX_OVERLAID_RUNS = len(RUN_COLORS)


def metric_title(metric: str) -> str:
    """A metric's axis title (:func:`fusionlab.metrics.metric_label`)."""
    return metric_label(metric)


def step_axis(last_step: int, ticks: int = 6) -> dict:
    """An x axis of training steps: from 0, whole-number ticks only (a run with one logged point would
    otherwise get ticks at 4.5, 5, 5.5), spaced 1, 2 or 5 × 10^k for at most about ``ticks`` ticks."""
    last = max(1, last_step)
    spacing = 1
    while last / spacing > ticks:
        spacing = _next_nice(spacing)
    return {"range": [0, last * 1.04], "tick0": 0, "dtick": spacing, "tickformat": "d"}


def _next_nice(value: int) -> int:
    """The next of 1, 2, 5, 10, 20, 50, ... after ``value``."""
    magnitude = 10 ** (len(str(value)) - 1)
    for nice in (1, 2, 5, 10):
        if nice * magnitude > value:
            return nice * magnitude
    return 10 * magnitude


def _sentence_case(text: str) -> str:
    """The first letter upper-cased, the rest as written (``str.capitalize`` would turn MCC into mcc)."""
    return text[:1].upper() + text[1:]


def chance_label(metric: str, level: float, num_labels: int | None = None) -> str:
    """The legend entry of a chance line: ``chance: ln 2 = 0.693`` for the loss, ``majority class (dev): 0.527``
    for a score."""
    if metric == "loss":
        return f"chance: ln {num_labels} = {level:.3f}" if num_labels else f"chance: {level:.3f}"
    return f"majority class (dev split): {level:.3f}"


def curves_chart(
    curves: pd.DataFrame, metric: str, title: str | None = None, marks: Sequence[CurveMarks] = ()
) -> go.Figure | None:
    """One line per run of a :func:`~fusionlab.dashboard.runs_view.curves` frame (``run, step, value``).

    Markers are drawn too: a short run or a metric evaluated once is a single point, which a bare line would not
    show. Given the runs' :class:`~fusionlab.dashboard.runs_view.CurveMarks`, the chart also draws each run's
    chance level (ln(labels) for the loss, the majority-class baseline for a score; one grey line when the runs
    share it, else one per run in its colour) and a vertical line at the step each run kept. The value axis
    never magnifies noise: a loss is drawn from 0 (and up to chance at least), a bounded score on its whole range.
    """
    if curves.empty:
        return None
    fig = go.Figure()
    colors: dict[str, str] = {}
    for i, (run, rows) in enumerate(curves.groupby("run", sort=False)):
        colors[str(run)] = RUN_COLORS[i % len(RUN_COLORS)]
        fig.add_scatter(
            name=str(run),
            x=rows["step"].tolist(),
            y=rows["value"].tolist(),
            mode="lines+markers",
            line={"color": colors[str(run)], "width": 2},
            marker={"size": 6},
            hovertemplate=f"{run}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
        )
    fig = style_figure(
        fig, title or f"{_sentence_case(metric_title(metric))} by training step", "step", metric_title(metric)
    )
    last_step = int(curves["step"].max())
    shown = [m for m in marks if m.run in colors]
    levels = _chance_lines(fig, metric, shown, colors, last_step)
    last_step = max([last_step, *(m.best_step or 0 for m in shown)])
    fig.update_xaxes(step_axis(last_step))
    values = curves["value"].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    bounds = metric_range(metric)
    if bounds is not None:  # a bounded score on its own scale: one point is not drawn on an axis from -0.5 to 1.5
        y_range = [bounds[0], bounds[1] + 0.02 * (bounds[1] - bounds[0])]
    elif metric == "loss":  # from 0, so that a wobble of 0.01 around ln 2 does not fill the plot
        y_range = [0.0, 1.1 * max([float(finite.max()) if finite.size else 0.0, *levels]) or 1.0]
    else:
        y_range = None
    if y_range is not None:
        fig.update_yaxes(range=y_range)
    _kept_lines(fig, shown, colors, y_range or _span(finite, levels))
    fig.update_layout(showlegend=True)
    return fig


def _span(values: np.ndarray, levels: list[float]) -> list[float]:
    """The values' extent (with the chance levels): how far a vertical line on an autoranged axis reaches."""
    every = [*values.tolist(), *levels]
    return [min(every), max(every)] if every else [0.0, 1.0]


def _chance_lines(
    fig: go.Figure, metric: str, marks: Sequence[CurveMarks], colors: dict[str, str], last_step: int
) -> list[float]:
    """Draw the runs' chance levels of ``metric`` as dotted lines across the plot (legend entries, not
    annotations, so that several never overlap); returns the levels drawn."""
    levels = {m.run: m.chance(metric) for m in marks}
    levels = {run: level for run, level in levels.items() if level is not None}
    if not levels:
        return []
    labels = {m.run: m.num_labels for m in marks}
    same = len({round(v, 6) for v in levels.values()}) == 1
    lines = [(None, next(iter(levels.values())))] if same else list(levels.items())
    x = [0, max(1, last_step) * 1.04]
    for run, level in lines:
        name = chance_label(metric, level, labels[run or next(iter(levels))])
        fig.add_scatter(
            name=name if run is None else f"{run.split(' ')[0]} {name}",
            x=x,
            y=[level, level],
            mode="lines",
            line={"color": NEUTRAL if run is None else colors[run], "dash": "dot", "width": 2},
            hovertemplate=f"{name}<extra></extra>",
            meta="chance",
        )
    return [level for _, level in lines]


def _kept_lines(fig: go.Figure, marks: Sequence[CurveMarks], colors: dict[str, str], y_range: list[float]) -> None:
    """A dashed vertical line at each run's kept step, in the run's colour, across the plot; the legend says
    what it is (labels at the top of the plot covered the curves there)."""
    kept = [m for m in marks if m.best_step is not None]
    for m in kept:
        who = "" if len(kept) == 1 else f"{m.run.split(' ')[0]} "
        name = f"{who}{KEPT_LABEL}: step {m.best_step}"
        fig.add_scatter(
            name=name,
            x=[m.best_step, m.best_step],
            y=list(y_range),
            mode="lines",
            line={"color": colors[m.run], "dash": "dash", "width": 2},
            hovertemplate=f"{name}<extra></extra>",
            meta="kept",
        )


def fusion_heatmap(weights: pd.DataFrame, title: str) -> go.Figure | None:
    """Fusion weights as a layer × adapter heatmap, from a frame indexed ``layer 1..L`` with adapter columns
    (:func:`~fusionlab.dashboard.runs_view.weights_frame`); every cell is annotated with its value."""
    if weights.empty:
        return None
    adapters = list(weights.columns)
    even = 1 / len(adapters)
    values = weights.to_numpy()
    layers = list(weights.index)
    return weight_heatmap(
        values,
        [[weight_hover(f"{layer}, {a}", v, even) for a, v in zip(adapters, row)] for layer, row in zip(layers, values)],
        title,
        x=(range(len(adapters)), [adapter_tick(name) for name in adapters], "adapter"),
        y=(layers, layers, "transformer layer"),
        even_share=even,
        text=[[f"{v:.2f}" for v in row] for row in values],
        height=140 + 45 * len(weights),
    )


def fusion_weight_bars(weights: pd.DataFrame, title: str) -> go.Figure | None:
    """Fusion weights as one stacked bar per layer, a segment per adapter in its colour.

    The weights of a layer sum to one, so each bar shows at a glance how a layer splits its attention; the
    live view redraws it as the run's snapshots arrive. The gridlines are the even shares (multiples of 1/N):
    a fusion that weighs its adapters evenly fills each band with one segment; hover a segment for its distance
    from 1/N.
    """
    if weights.empty:
        return None
    n = len(weights.columns)
    even = 1 / n
    fig = go.Figure()
    for name in weights.columns:
        values = weights[name].tolist()
        fig.add_bar(
            name=name,
            x=list(weights.index),
            y=values,
            marker_color=adapter_color(name),
            hovertext=[weight_hover(f"{layer}, {name}", v, even) for layer, v in zip(weights.index, values)],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    fig.update_layout(barmode="stack", showlegend=True)
    ticks = ["0", *(f"{k}/{n}" for k in range(1, n)), "1"]
    fig.update_yaxes(range=[0, 1], tickvals=[k * even for k in range(n + 1)], ticktext=ticks)
    for k in range(1, n):  # drawn over the bars too: a segment's edge against its even-share line
        fig.add_hline(y=k * even, line={"color": "rgba(0, 0, 0, 0.45)", "dash": "dot", "width": 1}, layer="above")
    return style_figure(fig, title, "transformer layer", "mean softmax weight (gridlines: 1/N each)")


def trajectory_chart(trajectory: pd.DataFrame, title: str) -> go.Figure | None:
    """One line per adapter: its fusion weight (mean over layers) at each snapshot, with the even share 1/N
    dashed, so a reader sees which adapters the fusion moved towards while it trained, and when. The axis is the
    weight's whole range, 0 to 1, so a fusion that stayed near 1/N looks like one that stayed near 1/N."""
    if trajectory.empty or trajectory["step"].nunique() < 2:
        return None
    fig = go.Figure()
    names = list(dict.fromkeys(trajectory["adapter"]))
    for name in names:
        rows = trajectory[trajectory["adapter"] == name]
        fig.add_scatter(
            name=name,
            x=rows["step"].tolist(),
            y=rows["weight"].tolist(),
            mode="lines+markers",
            line={"color": adapter_color(name), "width": 2},
            hovertemplate=f"{name}<br>step %{{x}}: %{{y:.3f}}<extra></extra>",
        )
    n = len(names)
    fig.add_hline(
        y=1 / n,
        line_dash="dash",
        line_color="gray",
        annotation_text=f"even share 1/{n}",
        annotation_position="top right",
    )
    fig.update_xaxes(step_axis(int(trajectory["step"].max())))
    # the whole range of a weight, 1/N among the ticks: a move of 0.04 is drawn as the 4 % it is
    ticks = sorted({0.0, 0.5, 1.0, 1 / n})
    fig.update_yaxes(
        range=[0, 1.02], tickvals=ticks, ticktext=[f"1/{n}" if t == 1 / n and n != 2 else f"{t:g}" for t in ticks]
    )
    fig.update_layout(showlegend=True)
    return style_figure(fig, title, "step", "mean fusion weight (over layers)")


def confusion_chart(matrix: list[list[int]], labels: list[str], title: str) -> go.Figure | None:
    """A confusion matrix (rows gold, columns predicted) with every cell's count written in it."""
    if not matrix or not labels:
        return None
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(labels),
            y=list(labels),
            colorscale=COUNT_SCALE,
            colorbar={"title": {"text": "examples", "side": "right"}},
            texttemplate="%{z}",
            textfont={"size": 15},
            hovertemplate="gold %{y}, predicted %{x}: %{z}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="bottom")
    return style_figure(fig, title, "predicted label", "gold label", height=160 + 60 * len(labels))
