"""Plotly figures for the dashboard pages, built from the dashboard's result objects.

Every figure has a title and axis titles (with units where there are any), and every adapter is drawn in its
:func:`~fusionlab.dashboard.colors.adapter_color`, on bars, lines and tick labels alike, so an adapter looks the
same on every page. Backgrounds are transparent and grid lines semi-transparent grey, so the figures read on
Streamlit's light and dark themes (whose Plotly template supplies the font colour). A builder given nothing to
draw returns ``None`` instead of an empty figure; the page then says why there is no chart.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from fusionlab.dashboard.colors import adapter_color
from fusionlab.metrics import metric_label

if TYPE_CHECKING:
    from fusionlab.dashboard.dev_browser import DevDrops
    from fusionlab.dashboard.efficiency import CheckpointSize, LatencyReport, ParameterReport
    from fusionlab.dashboard.inference import LeaveOneOut
    from fusionlab.dashboard.mechanics import MechanicsResult
    from fusionlab.salience import Salience

GRID = "rgba(128, 128, 128, 0.25)"
NEUTRAL = "#8C96A3"  # the frozen encoder and other non-adapter parts: mid grey, visible on both themes
FUSION_COLOR = "#9467BD"
WEIGHT_SCALE = "Viridis"  # perceptually uniform, dark-to-light: readable on both themes


TITLE_WRAP = 44
"""Characters per chart-title line: a half-width column at 800 px holds about this many at the house font size,
and Plotly cuts a title that is too long rather than wrapping it."""

LEGEND_BELOW = {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0, "xanchor": "left", "x": 0}
"""Every legend sits at the foot of the figure, where Plotly makes room for it under the axis title; above the plot,
beside a title, it covered the title once a column was narrow."""


def wrap_title(title: str, width: int = TITLE_WRAP) -> str:
    """``title`` broken into lines of at most ``width`` characters (Plotly's ``<br>``), at spaces."""
    return "<br>".join(textwrap.wrap(title, width)) or title


def title_of(fig: go.Figure | dict) -> str:
    """A figure's title as one line of text (the ``<br>`` that :func:`wrap_title` put in, read as spaces)."""
    layout = fig["layout"] if isinstance(fig, dict) else fig.layout.to_plotly_json()
    return str(layout.get("title", {}).get("text", "")).replace("<br>", " ")


def style_figure(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    """The house style of every dashboard chart: left title (wrapped, never cut), legend below the plot,
    transparent background (both themes), light grid."""
    wrapped = wrap_title(title)
    extra_lines = wrapped.count("<br>")
    fig.update_layout(
        title={"text": wrapped, "x": 0, "xanchor": "left"},
        height=height + 22 * extra_lines,
        margin={"l": 10, "r": 10, "t": 60 + 22 * extra_lines, "b": 10},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        font={"size": 13},
        legend=LEGEND_BELOW,
    )
    fig.update_xaxes(title_text=x_title, gridcolor=GRID, zerolinecolor=GRID, automargin=True)
    fig.update_yaxes(title_text=y_title, gridcolor=GRID, zerolinecolor=GRID, automargin=True)
    return fig


def adapter_tick(name: str) -> str:
    """A tick label with a swatch of the adapter's colour; the name keeps the theme's text colour, because some
    adapter colours (the palette's yellow) are too light to read as text on a light background."""
    return f"<span style='color:{adapter_color(name)}'>■</span> {name}"


# -- playground ------------------------------------------------------------------------------------------
def leave_one_out_chart(result: LeaveOneOut) -> go.Figure:
    """One bar per adapter: how the fusion's confidence in its answer changes when that adapter is switched off
    (in points of probability; below zero, the adapter was helping). A flipped answer is written on its bar."""
    names = [d.adapter for d in result.drops]
    changes = [result.change(d) for d in result.drops]
    fig = go.Figure(
        go.Bar(
            x=[adapter_tick(n) for n in names],
            y=changes,
            marker_color=[adapter_color(n) for n in names],
            text=[
                f"{c:+.1%}" + ("" if d.label == result.label else f" → {d.label}")
                for c, d in zip(changes, result.drops)
            ],
            textposition="outside",
            hovertemplate="without %{x}: %{y:+.1%}<extra></extra>",
        )
    )
    reach = max(0.05, max(abs(c) for c in changes) * 1.3)
    fig.update_yaxes(range=[-reach, reach], tickformat="+.0%", zeroline=True, zerolinewidth=2)
    title = f"Drop each adapter: the fusion's confidence in '{result.label}' ({result.confidence:.0%}) without it"
    return style_figure(fig, title, "adapter switched off", "change in probability")


def dev_drop_chart(drops: DevDrops) -> go.Figure:
    """One bar per adapter: the fusion's dev metric without that adapter, minus its metric with all of them."""
    names = list(drops.without)
    changes = [drops.change(n) for n in names]
    paired = [drops.differences.get(n) for n in names]
    error = None
    if all(p is not None for p in paired):  # the paired 95 % interval as an error bar
        error = {
            "type": "data",
            "symmetric": False,
            "array": [p.high - p.value for p in paired],
            "arrayminus": [p.value - p.low for p in paired],
            "color": "#555",
            "thickness": 1.2,
            "width": 6,
        }
    fig = go.Figure(
        go.Bar(
            x=[adapter_tick(n) for n in names],
            y=changes,
            marker_color=[adapter_color(n) for n in names],
            error_y=error,
            text=[
                f"{c:+.3f}" + (" (within noise)" if p is not None and p.within_noise else "")
                for c, p in zip(changes, paired)
            ],
            textposition="outside",
            hovertemplate="without %{x}: %{y:+.3f} %{customdata}<extra></extra>",
            customdata=[f"[{p.low:+.3f}, {p.high:+.3f}] paired 95 %" if p is not None else "" for p in paired],
        )
    )
    ends = [abs(c) for c in changes] + [max(abs(p.low), abs(p.high)) for p in paired if p is not None]
    reach = max(0.02, max(ends) * 1.3)
    fig.update_yaxes(range=[-reach, reach], zeroline=True, zerolinewidth=2)
    metric = metric_label(drops.metric)
    interval = drops.with_all_interval
    with_all = f"{drops.with_all:.3f}" + (f" {interval.bounds_text()}" if interval is not None else "")
    title = (
        f"Over {drops.examples} dev examples: {metric} without each adapter (with all: {with_all}); "
        "bars: paired 95 % intervals"
    )
    return style_figure(fig, title, "adapter switched off", f"change in dev {metric}")


def weight_colors(weights: np.ndarray, zoom: bool = False, even_share: float | None = None) -> dict[str, object]:
    """The one colour scale of every fusion-weight heatmap: Viridis on the absolute 0–1 of a softmax.

    ``zoom`` stretches the colours to the values shown instead (a briefly trained fusion stays close to 1/N
    everywhere, and zooming makes its small preferences visible); the colour bar then spans only that range
    and says so, so its labels keep the scale honest. ``even_share`` (1/N) gets its own tick on the bar.
    """
    values = np.asarray(weights, dtype=float)  # a gap (None) becomes NaN and is ignored
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    zoomed = zoom and high - low > 1e-6
    zmin, zmax = (low, high) if zoomed else (0.0, 1.0)
    title = "fusion weight<br>(zoomed)" if zoomed else "fusion weight"
    ticks = [v for v in np.linspace(zmin, zmax, 5)]
    labels = [f"{v:.2f}" if zoomed else f"{v:g}" for v in ticks]
    if even_share is not None and zmin <= even_share <= zmax:
        keep = [i for i, v in enumerate(ticks) if abs(v - even_share) > (zmax - zmin) / 10]
        ticks = [ticks[i] for i in keep] + [even_share]
        labels = [labels[i] for i in keep] + [f"1/N = {even_share:.2f}"]
    colorbar = {"title": {"text": title, "side": "right"}, "tickvals": ticks, "ticktext": labels}
    return {"colorscale": WEIGHT_SCALE, "zmin": zmin, "zmax": zmax, "colorbar": colorbar}


def weight_heatmap(
    z: np.ndarray | Sequence[Sequence[float | None]],
    hover: Sequence[Sequence[str]],
    title: str,
    x: tuple[Sequence[object], Sequence[str], str],
    y: tuple[Sequence[object], Sequence[str], str],
    zoom: bool = False,
    even_share: float | None = None,
    text: Sequence[Sequence[str]] | None = None,
    height: int = 380,
) -> go.Figure:
    """Every fusion-weight heatmap of the dashboard (Playground, Mechanics, Runs, the usage matrix).

    ``x`` and ``y`` are ``(positions, tick labels, axis title)``; ``hover`` holds one line per cell, ``text``
    (optional) what is written in each cell. One function, so that one colour scale (:func:`weight_colors`)
    and one hover style serve every page.
    """
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(x[0]),
            y=list(y[0]),
            **weight_colors(z, zoom, even_share),
            text=text,
            texttemplate="%{text}" if text is not None else None,
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            hoverongaps=False,
        )
    )
    fig.update_xaxes(tickvals=list(x[0]), ticktext=list(x[1]), showgrid=False)
    fig.update_yaxes(tickvals=list(y[0]), ticktext=list(y[1]), showgrid=False)
    return style_figure(fig, title, x[2], y[2], height=height)


def weight_hover(where: str, value: float, even_share: float | None) -> str:
    """One cell's hover line: the weight, and how far it is from the even share 1/N."""
    if even_share is None:
        return f"{where}: {value:.3f}"
    return f"{where}: {value:.3f} ({value - even_share:+.3f} vs the even share 1/N = {even_share:.3f})"


def layer_adapter_heatmap(
    weights: np.ndarray, adapters: Sequence[str], title: str, zoom: bool = False
) -> go.Figure | None:
    """``[layers, adapters]`` fusion weights; layer 1 (nearest the input) at the bottom, as in the paper."""
    if weights.size == 0 or len(adapters) == 0:
        return None
    even = 1 / len(adapters)
    layers = [f"layer {i + 1}" for i in range(weights.shape[0])]
    hover = [
        [weight_hover(f"{layer}, {a}", v, even) for a, v in zip(adapters, row)] for layer, row in zip(layers, weights)
    ]
    return weight_heatmap(
        weights,
        hover,
        title,
        x=(range(len(adapters)), [adapter_tick(n) for n in adapters], "adapter"),
        y=(layers, layers, "transformer layer"),
        zoom=zoom,
        even_share=even,
        text=[[f"{v:.3f}" for v in row] for row in weights],
        height=120 + 45 * weights.shape[0],
    )


def token_adapter_heatmap(
    tokens: Sequence[str], weights: np.ndarray, adapters: Sequence[str], title: str, zoom: bool = False
) -> go.Figure | None:
    """``[tokens, adapters]`` fusion weights: which adapter every token draws on (tokens along the x axis).

    Tokens are placed by position, so a word that occurs twice keeps two columns.
    """
    if len(tokens) == 0 or len(adapters) == 0 or weights.size == 0:
        return None
    even = 1 / len(adapters)
    hover = [
        [weight_hover(f"token {i + 1} {t!r}, {a}", float(weights[i, j]), even) for i, t in enumerate(tokens)]
        for j, a in enumerate(adapters)
    ]
    fig = weight_heatmap(
        weights.T,
        hover,
        title,
        x=(range(len(tokens)), list(tokens), "token"),
        y=(range(len(adapters)), [adapter_tick(n) for n in adapters], "adapter"),
        zoom=zoom,
        even_share=even,
        height=200 + 40 * len(adapters),
    )
    fig.update_xaxes(tickangle=-60 if len(tokens) > 12 else 0)
    return fig


def learned_weights_chart(learned: np.ndarray | None, adapters: Sequence[str]) -> go.Figure | None:
    """Weighted fusion's learned softmax weight of every adapter in every layer (grouped bars)."""
    if learned is None or learned.size == 0 or len(adapters) == 0:
        return None
    layers = [f"layer {i + 1}" for i in range(learned.shape[0])]
    fig = go.Figure()
    for j, name in enumerate(adapters):
        fig.add_bar(name=name, x=layers, y=learned[:, j].tolist(), marker_color=adapter_color(name))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return style_figure(fig, "Weighted fusion: learned weight of each adapter per layer", "transformer layer", "weight")


SALIENCE_SCALE = "RdBu"
"""Diverging, centred on white at 0: a token's sign (towards or away from the class) is its hue, its size the depth.
Plotly's RdBu runs from red (lowest) to blue (highest): :data:`SALIENCE_HUES` says so in words."""
SALIENCE_HUES = ("blue", "red")
"""The hues of a push towards the class and away from it, as :data:`SALIENCE_SCALE` draws them."""


def salience_heatmap(result: Salience) -> go.Figure | None:
    """Integrated-gradients attribution of every token, the target adapter alone above the fusion.

    One colour scale for both rows, symmetric around 0 (``±`` the largest absolute attribution of either model,
    stated on the colour bar), so equal colours mean equal pushes and white means none.
    """
    if len(result.tokens) == 0:
        return None
    scale = result.scale
    rows = [(f"{result.single_name} alone", result.single.values), ("fusion", result.fused.values)]
    hover = [
        [f"token {i + 1} {t!r}, {name}: {float(v[i]):+.3f} towards {result.label}" for i, t in enumerate(result.tokens)]
        for name, v in rows
    ]
    fig = go.Figure(
        go.Heatmap(
            z=[v.tolist() for _, v in rows],
            x=list(range(len(result.tokens))),
            y=[0, 1],
            colorscale=SALIENCE_SCALE,
            zmin=-scale,
            zmid=0.0,
            zmax=scale,
            colorbar={"title": {"text": f"push towards<br>{result.label} (logit)", "side": "right"}},
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    fig.update_xaxes(tickvals=list(range(len(result.tokens))), ticktext=list(result.tokens), showgrid=False)
    fig.update_xaxes(tickangle=-60 if len(result.tokens) > 12 else 0)
    fig.update_yaxes(tickvals=[0, 1], ticktext=[name for name, _ in rows], showgrid=False, autorange="reversed")
    title = f"Which tokens push towards “{result.label}”: integrated gradients, same scale for both (±{scale:.2f})"
    return style_figure(fig, title, "token", "model", height=260)


# -- efficiency -------------------------------------------------------------------------------------------
def _count_label(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def parameter_chart(report: ParameterReport) -> go.Figure:
    """Parameters per component as bars on a linear axis from 0, so a bar's length is its count (on a log axis
    the 22.7 M encoder looked about twice the 2.66 M fusion layers), each labelled with its value."""
    rows = [("encoder (frozen, shared)", report.base, NEUTRAL)]
    rows += [(f"adapter {name} (frozen)", n, adapter_color(name)) for name, n in report.adapters.items()]
    rows += [
        ("adapter heads (frozen)", report.adapter_heads, NEUTRAL),
        ("fusion layers (trained)", report.fusion, FUSION_COLOR),
        ("fusion head (trained)", report.fusion_head, FUSION_COLOR),
    ]
    rows = [row for row in rows if row[1] > 0]
    labels, counts, colors = zip(*rows)
    millions = [n / 1e6 for n in counts]
    fig = go.Figure(
        go.Bar(
            y=list(labels),
            x=millions,
            orientation="h",
            marker_color=list(colors),
            text=[_count_label(n) for n in counts],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:.4f} M<extra></extra>",
        )
    )
    fig.update_xaxes(type="linear", range=[0, max(millions) * 1.15], rangemode="tozero")  # room for the labels
    fig.update_yaxes(autorange="reversed")
    title = (
        f"Parameters per component (trained by fusion: {_count_label(report.trainable)}, "
        f"{report.trainable_share:.1%} of {_count_label(report.total)})"
    )
    return style_figure(fig, title, "parameters (millions)", "", height=140 + 34 * len(rows))


def latency_chart(report: LatencyReport) -> go.Figure:
    """Latency of fusion over 1…N adapters, against the encoder alone and one adapter alone: the median of the
    timed runs, with the middle half of them (25th–75th percentile) as error bars and bands."""
    counts = list(range(1, len(report.fusion) + 1))
    added = [f"+ {name}" for name in report.fusion_adapters]
    fig = go.Figure()
    for name, timing, color, dash in (
        ("encoder alone", report.base, NEUTRAL, "dot"),
        (f"{report.single_adapter} adapter alone", report.single, adapter_color(report.single_adapter), "dash"),
    ):
        if timing.q3 > timing.q1:  # the middle half of its runs, behind its line
            fig.add_hrect(y0=timing.q1, y1=timing.q3, fillcolor=color, opacity=0.15, line_width=0, layer="below")
        fig.add_scatter(
            name=f"{name} (median)",
            x=[counts[0] - 0.5, counts[-1] + 0.5],
            y=[timing.median] * 2,
            mode="lines",
            line={"color": color, "dash": dash},
            hovertemplate=f"{name}: {timing.text()}<extra></extra>",
        )
    fig.add_scatter(
        name="fusion (median, bars: middle half of the runs)",
        x=counts,
        y=list(report.fusion_ms),
        mode="lines+markers+text",
        line={"color": FUSION_COLOR, "width": 3},
        marker={"size": 10, "color": [adapter_color(n) for n in report.fusion_adapters]},
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [t.q3 - t.median for t in report.fusion],
            "arrayminus": [t.median - t.q1 for t in report.fusion],
            "color": FUSION_COLOR,
            "thickness": 1.5,
            "width": 6,
        },
        text=[f"{t.median:.1f} ms" for t in report.fusion],
        textposition="top right",
        cliponaxis=False,
        customdata=[[a, t.text()] for a, t in zip(added, report.fusion)],
        hovertemplate="%{x} adapters (%{customdata[0]}): %{customdata[1]}<extra></extra>",
    )
    fig.update_xaxes(
        tickvals=counts,
        ticktext=[f"{k}<br>{adapter_tick(n)}" for k, n in zip(counts, report.fusion_adapters)],
        range=[0.5, len(counts) + 0.5],  # room for the first and last point's label
    )
    fig.update_yaxes(rangemode="tozero")
    runs = f"{report.repeats} run{'' if report.repeats == 1 else 's'}"
    title = f"Latency vs number of fused adapters ({report.tokens} tokens, median and middle half of {runs})"
    return style_figure(fig, title, "adapters fused (each adds the one named)", "latency (ms)")


def checkpoint_size_chart(sizes: Sequence[CheckpointSize]) -> go.Figure | None:
    """Bytes on disk of the fusion checkpoint and of each adapter checkpoint it needs."""
    if not sizes:
        return None
    colors = [FUSION_COLOR if s.kind == "fusion" else adapter_color(s.name) for s in sizes]
    fig = go.Figure(
        go.Bar(
            x=[f"{s.kind} {s.name}" for s in sizes],
            y=[s.bytes / 1024 for s in sizes],
            marker_color=colors,
            text=[f"{s.bytes / 1024:,.0f} kB" for s in sizes],
            textposition="outside",
        )
    )
    fig.update_yaxes(rangemode="tozero")
    return style_figure(
        fig, "Size on disk of each checkpoint (the shared encoder not included)", "checkpoint", "size (kB)"
    )


# -- mechanics --------------------------------------------------------------------------------------------
def mechanics_weights_chart(result: MechanicsResult) -> go.Figure | None:
    """Softmax weight of every adapter, mean over tokens; one group of bars per attention head."""
    if not result.names or result.weights.size == 0:
        return None
    per_head = result.per_head  # [heads, N]
    groups = [f"head {h + 1}" for h in range(per_head.shape[0])] if result.num_heads > 1 else ["all tokens"]
    fig = go.Figure()
    for j, name in enumerate(result.names):
        fig.add_bar(
            name=name,
            x=groups,
            y=per_head[:, j].tolist(),
            marker_color=adapter_color(name),
            text=[f"{w:.2f}" for w in per_head[:, j]],
            textposition="outside",
        )
    fig.add_hline(
        y=1 / len(result.names),
        line_dash="dot",
        line_color=NEUTRAL,
        annotation_text="uniform",
        annotation_position="top left",
    )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.1])
    title = f"{result.method.capitalize()} fusion at temperature {result.temperature:g}: weight per adapter"
    x_title = "attention head" if result.num_heads > 1 else ""
    return style_figure(fig, title, x_title, "softmax weight (mean over tokens)")


def mechanics_similarity_chart(result: MechanicsResult) -> go.Figure | None:
    """Cosine similarity of the fused output to each adapter's output, or for a real sentence of the fused
    change to each adapter's change (mean over tokens): see :attr:`MechanicsResult.compared`."""
    if not result.names:
        return None
    fig = go.Figure(
        go.Bar(
            x=[adapter_tick(n) for n in result.names],
            y=result.cosine.tolist(),
            marker_color=[adapter_color(n) for n in result.names],
            text=[f"{c:.4f}" for c in result.cosine],
            textposition="outside",
        )
    )
    low = float(min(0.0, result.cosine.min()))
    fig.update_yaxes(range=[low - 0.12 if low < 0 else 0.0, 1.1])  # room for a negative bar's label below it
    what = "output" if result.compared == "output" else "change to the hidden state"
    title = f"How close the fused {what} is to each adapter's {what.split(' ')[0]}"
    return style_figure(fig, title, "adapter", "cosine similarity (mean over tokens)")
