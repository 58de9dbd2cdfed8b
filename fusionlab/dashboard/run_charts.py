"""Plotly figures of the Train and Runs pages: training curves, fusion weights and confusion matrices.

They follow the look of :mod:`fusionlab.dashboard.charts`: a left-aligned title, axis titles on every axis,
transparent backgrounds and translucent grey grid lines (so they read on Streamlit's light and dark themes),
fusion weights through the one heatmap of :func:`~fusionlab.dashboard.charts.weight_heatmap` with layer 1 (nearest the input) at the bottom, and every adapter
in its :func:`~fusionlab.dashboard.colors.adapter_color`. A builder given nothing to draw returns ``None``
rather than an empty figure, so the page can say why there is no chart.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from fusionlab.dashboard.charts import adapter_tick, style_figure, weight_heatmap, weight_hover
from fusionlab.dashboard.colors import adapter_color

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
    """A metric's axis title: the trainer logs dev metrics as ``eval_<name>``, shown as ``dev <name>``."""
    if metric.startswith("eval_"):
        return "dev " + metric.removeprefix("eval_").replace("_", " ")
    return metric.replace("_", " ")


def curves_chart(curves: pd.DataFrame, metric: str, title: str | None = None) -> go.Figure | None:
    """One line per run of a :func:`~fusionlab.dashboard.runs_view.curves` frame (``run, step, value``).

    Markers are drawn too: a short run or a dev metric evaluated once is a single point, which a bare line
    would not show.
    """
    if curves.empty:
        return None
    fig = go.Figure()
    for i, (run, rows) in enumerate(curves.groupby("run", sort=False)):
        fig.add_scatter(
            name=str(run),
            x=rows["step"].tolist(),
            y=rows["value"].tolist(),
            mode="lines+markers",
            line={"color": RUN_COLORS[i % len(RUN_COLORS)], "width": 2},
            marker={"size": 6},
            hovertemplate=f"{run}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
        )
    fig = style_figure(
        fig, title or f"{metric_title(metric).capitalize()} by training step", "step", metric_title(metric)
    )
    # Below the plot: run labels are long, and a legend beside the title would cover it once it wraps.
    fig.update_layout(
        showlegend=True, legend={"orientation": "h", "yanchor": "top", "y": -0.25, "xanchor": "left", "x": 0}
    )
    return fig


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
    live view redraws it as the run's snapshots arrive.
    """
    if weights.empty:
        return None
    fig = go.Figure()
    for name in weights.columns:
        fig.add_bar(
            name=name,
            x=list(weights.index),
            y=weights[name].tolist(),
            marker_color=adapter_color(name),
            hovertemplate=f"%{{x}}, {name}: %{{y:.3f}}<extra></extra>",
        )
    fig.update_layout(barmode="stack", showlegend=True)
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return style_figure(fig, title, "transformer layer", "mean softmax weight")


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
