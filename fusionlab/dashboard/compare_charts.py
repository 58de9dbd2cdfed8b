"""Charts of a saved comparison: dev score against latency, against trained parameters, and the fusion cut down.

Every chart shares two reference lines, so its vertical scale cannot exaggerate: the majority class (what
predicting the most frequent label scores) and the target's own adapter alone. Every score carries its 95 %
bootstrap interval as an error bar, and the score axis spans from below the lower of the lines and the intervals
to above the best, never beyond 0–1. Methods keep one colour and marker per method on
every chart (fusions in purples, merges in greens, the search in orange, the adapter in the task's colour).
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from fusionlab.composition.dropping import CurvePoint
from fusionlab.composition.results import Comparison, MethodResult
from fusionlab.dashboard.charts import FUSION_COLOR, NEUTRAL, style_figure
from fusionlab.dashboard.colors import adapter_color
from fusionlab.metrics import metric_label, metric_range

METHOD_COLORS = {
    "fusion:attention": FUSION_COLOR,
    "fusion:weighted": "#C5A3E0",
    "fusion:average": "#6A3D9A",
    "merge:average": "#1B9E77",
    "merge:task_arithmetic": "#66C2A5",
    "merge:ties": "#2E7D32",
    "merge:dare": "#A6D854",
    "lorahub": "#E6851E",
}
FAMILY_SYMBOLS = {"single": "star", "fusion": "circle", "merging": "diamond", "search": "square"}
DROP_COLOR, PRUNE_COLOR = FUSION_COLOR, "#E6851E"


def method_color(result: MethodResult, target: str) -> str:
    if result.family == "single":
        return adapter_color(target)
    return METHOD_COLORS.get(result.method.removesuffix("+ft"), NEUTRAL)


def score_range(comparison: Comparison, values: list[float]) -> list[float]:
    """From a little below the lower of the majority class and the worst score, to a little above the best,
    within the metric's own range (a little room above a perfect score for its marker)."""
    floor = (metric_range(comparison.main_metric) or (0.0, 1.0))[0]  # MCC goes down to -1, every other main metric to 0
    low = min([comparison.majority_baseline, *values])
    high = max([comparison.majority_baseline, *values])
    pad = max(0.03, 0.08 * (high - low))
    return [max(floor, low - pad), min(1.0, high + pad) + (0.02 if high + pad >= 1.0 else 0.0)]


def _reference_lines(fig: go.Figure, comparison: Comparison, skip_adapter_line: bool = False) -> None:
    """The majority class (dotted) and, unless it is a point of the chart, the adapter alone (dashed)."""
    fig.add_hline(
        y=comparison.majority_baseline,
        line={"color": NEUTRAL, "dash": "dot"},
        annotation_text=f"majority class {comparison.majority_baseline:.3f}",
        annotation_position="bottom right",
    )
    alone = comparison.result("adapter")
    if alone is not None and not skip_adapter_line:
        fig.add_hline(
            y=alone.value,
            line={"color": adapter_color(comparison.options.target), "dash": "dash"},
            annotation_text=f"{comparison.options.target} adapter alone {alone.value:.3f}",
            annotation_position="top left",
        )


def _encoder_line(fig: go.Figure) -> None:
    """The plain encoder's latency (1×), labelled at the foot of the plot, clear of the points' labels."""
    fig.add_vline(
        x=1.0,
        line={"color": NEUTRAL, "dash": "dot"},
        annotation_text="plain encoder",
        annotation_position="bottom right",
    )


def _score_title(comparison: Comparison) -> str:
    return f"{metric_label(comparison.main_metric)} ({comparison.dev_examples} dev examples)"


CHAR_WIDTH, LABEL_HEIGHT = 0.013, 0.06
"""A label's size as fractions of the plot (about 7 px a character and one 14-px line on a 560 × 260 px plot)."""
MARKER_HALF = (0.015, 0.03)
"""Half a marker's width and height, as fractions of the plot."""
POSITIONS = ("top center", "bottom center", "middle right", "middle left")

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in fractions of the plot


def _label_box(x: float, y: float, width: float, position: str) -> Box:
    mx, my = MARKER_HALF
    if position == "top center":
        return (x - width / 2, y + my, x + width / 2, y + my + LABEL_HEIGHT)
    if position == "bottom center":
        return (x - width / 2, y - my - LABEL_HEIGHT, x + width / 2, y - my)
    if position == "middle right":
        return (x + mx, y - LABEL_HEIGHT / 2, x + mx + width, y + LABEL_HEIGHT / 2)
    return (x - mx - width, y - LABEL_HEIGHT / 2, x - mx, y + LABEL_HEIGHT / 2)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def label_positions(
    xs: list[float], ys: list[float], texts: list[str], x_range: list[float], y_range: list[float]
) -> list[str | None]:
    """Where each point's text label goes (a Plotly ``textposition``), or ``None`` for no label: above the point
    if that place is free, else below, right or left, so that no label covers a marker or another label. A point
    whose marker sits on an earlier one's gets none (the legend and the hover name it)."""
    span_x = (x_range[1] - x_range[0]) or 1.0
    span_y = (y_range[1] - y_range[0]) or 1.0
    points = [((x - x_range[0]) / span_x, (y - y_range[0]) / span_y) for x, y in zip(xs, ys)]
    mx, my = MARKER_HALF
    markers = [(x - mx, y - my, x + mx, y + my) for x, y in points]
    placed: list[Box] = []
    positions: list[str | None] = []
    for i, ((x, y), text) in enumerate(zip(points, texts)):
        if any(_overlap(markers[i], markers[j]) for j in range(i)):
            positions.append(None)
            continue
        chosen = None
        for position in POSITIONS:
            box = _label_box(x, y, CHAR_WIDTH * len(text), position)
            inside = box[0] >= 0 and box[2] <= 1 and box[1] >= 0 and box[3] <= 1.1  # a little room above the plot
            others = (m for j, m in enumerate(markers) if j != i)
            if inside and not any(_overlap(box, m) for m in others) and not any(_overlap(box, b) for b in placed):
                chosen = position
                placed.append(box)
                break
        positions.append(chosen)
    return positions


def _short_name(result: MethodResult) -> str:
    return result.method.split(":")[-1]


def _method_point(
    fig: go.Figure, comparison: Comparison, result: MethodResult, x: float, hover_x: str, label: str | None
) -> None:
    fig.add_scatter(
        name=result.method,
        x=[x],
        y=[result.value],
        mode="markers+text",
        marker={
            "size": 14 if result.family == "single" else 11,
            "color": method_color(result, comparison.options.target),
            "symbol": FAMILY_SYMBOLS.get(result.family, "circle"),
            "line": {"width": 1, "color": "rgba(128,128,128,0.8)"},
        },
        text=[_short_name(result) if label else ""],
        textposition=label or "top center",
        cliponaxis=False,
        error_y=_interval_bar(result),
        customdata=[[result.method, hover_x, _interval_text(result)]],  # data, not template: names stay text
        hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>score %{y:.3f} %{customdata[2]}<extra></extra>",
    )


def _extent(results: list[MethodResult]) -> list[float]:
    """Every score and interval bound the chart draws: the axis spans them all, so no error bar is cut."""
    bounds = [b for r in results if r.interval for b in (r.interval.low, r.interval.high)]
    return [r.value for r in results] + bounds


def _interval_bar(result: MethodResult) -> dict | None:
    """The score's 95 % bootstrap interval as an error bar (comparisons saved before intervals: none)."""
    if result.interval is None:
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": [result.interval.high - result.value],
        "arrayminus": [result.value - result.interval.low],
        "thickness": 1,
        "width": 3,
    }


def _interval_text(result: MethodResult) -> str:
    verdict = f"; vs adapter: {result.vs_adapter.verdict()}" if result.vs_adapter is not None else ""
    return (result.interval.bounds_text() if result.interval else "") + verdict


def accuracy_latency_chart(comparison: Comparison) -> go.Figure | None:
    """Each method's dev score against its latency relative to the plain encoder (1×: no extra cost)."""
    results = comparison.results
    if not results:
        return None  # nothing was scored (every method skipped)
    fig = go.Figure()
    ratios = [comparison.latency_ratio(r) for r in results]
    x_range = [min(0.9, min(ratios) - 0.05), max(ratios) * 1.08 + 0.05]
    y_range = score_range(comparison, _extent(results))
    labels = label_positions(ratios, [r.value for r in results], [_short_name(r) for r in results], x_range, y_range)
    for result, ratio, label in zip(results, ratios, labels):
        _method_point(fig, comparison, result, ratio, f"{ratio:.2f}× the encoder's latency", label)
    _encoder_line(fig)
    _reference_lines(fig, comparison, skip_adapter_line=True)
    fig.update_xaxes(range=x_range, ticksuffix="×")
    fig.update_yaxes(range=y_range)
    title = f"{comparison.options.target}: dev score vs inference latency"
    return style_figure(fig, title, "latency relative to the plain encoder", _score_title(comparison), height=440)


def accuracy_parameters_chart(comparison: Comparison) -> go.Figure | None:
    """Each method's dev score against the parameters it trained for the target (log scale); the adapter alone,
    which trained nothing in the comparison, is the dashed line."""
    trained = [r for r in comparison.results if r.trained_params > 0]
    if not trained:
        return None
    fig = go.Figure()
    counts = [r.trained_params for r in trained]
    x_range = [math.log10(min(counts)) - 0.5, math.log10(max(counts)) + 0.5]
    y_range = score_range(comparison, _extent(comparison.results))
    logs = [math.log10(n) for n in counts]
    labels = label_positions(logs, [r.value for r in trained], [_short_name(r) for r in trained], x_range, y_range)
    for result, label in zip(trained, labels):
        hover = f"{result.trained_params:,} trained parameters"
        _method_point(fig, comparison, result, result.trained_params, hover, label)
    _reference_lines(fig, comparison)
    # Powers of ten only: the minor ticks' digits crowded the axis.
    fig.update_xaxes(type="log", dtick=1, range=x_range)
    fig.update_yaxes(range=y_range)
    title = f"{comparison.options.target}: dev score vs parameters trained for it"
    return style_figure(fig, title, "parameters trained for the target (log scale)", _score_title(comparison), 440)


def _interval_bars(points: list[CurvePoint], color: str) -> dict | None:
    """Each point's 95 % interval as an error bar (None where the comparison was saved without intervals)."""
    if any(p.interval is None for p in points):
        return None
    return {
        "type": "data",
        "symmetric": False,
        "array": [p.interval.high - p.metric for p in points],
        "arrayminus": [p.metric - p.interval.low for p in points],
        "color": color,
        "thickness": 1.2,
        "width": 5,
    }


def _vs_full(point: CurvePoint) -> str:
    """The hover's line on a cut-down point: its paired difference from the full fusion, with the verdict."""
    return f"<br>vs the full fusion: {point.vs_full.text()}" if point.vs_full is not None else ""


def cut_down_chart(comparison: Comparison) -> go.Figure | None:
    """The attention fusion cut down two ways: AdapterDrop (the first k layers run without adapters and fusion)
    and pruning (the adapter with the lowest mean weight removed, one by one); score against latency."""
    if not comparison.adapter_drop and not comparison.pruning:
        return None
    fig = go.Figure()
    curves = (
        ("AdapterDrop: first k layers without adapters", comparison.adapter_drop, DROP_COLOR, "k"),
        ("pruning: adapters left in the fusion", comparison.pruning, PRUNE_COLOR, "n"),
    )
    values = []
    for name, points, color, kind in curves:
        if not points:
            continue
        ratios = [comparison.latency_ratio(p) for p in points]
        values += [p.metric for p in points] + [
            v for p in points if p.interval for v in (p.interval.low, p.interval.high)
        ]
        text = [f"k={p.dropped_layers}" if kind == "k" else f"n={len(p.adapters)}" for p in points]
        fig.add_scatter(
            name=name,
            x=ratios,
            y=[p.metric for p in points],
            error_y=_interval_bars(points, color),
            mode="lines+markers+text",
            line={"color": color, "width": 2},
            marker={"size": 9, "color": color},
            text=text,
            textposition="top center" if kind == "k" else "bottom center",
            cliponaxis=False,
            customdata=[[p.label, ", ".join(p.adapters), _vs_full(p)] for p in points],
            hovertemplate="%{customdata[0]}<br>adapters: %{customdata[1]}<br>%{x:.2f}× · score %{y:.3f}"
            "%{customdata[2]}<extra></extra>",
        )
    _reference_lines(fig, comparison)
    _encoder_line(fig)
    all_ratios = [comparison.latency_ratio(p) for p in [*comparison.adapter_drop, *comparison.pruning]]
    fig.update_xaxes(range=[min(0.9, min(all_ratios) - 0.05), max(all_ratios) * 1.08 + 0.05], ticksuffix="×")
    alone = comparison.result("adapter")
    fig.update_yaxes(range=score_range(comparison, values + ([alone.value] if alone else [])))
    title = f"{comparison.options.target}: the attention fusion cut down, score vs latency"
    return style_figure(fig, title, "latency relative to the plain encoder", _score_title(comparison), height=440)
