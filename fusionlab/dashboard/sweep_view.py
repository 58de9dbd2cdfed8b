"""The Runs page's view of a sweep: the grid of subsets × methods, and what each source adds against how much the
fusion leans on it (Streamlit-free: figures and lines from a :class:`~fusionlab.sweep.analysis.SweepReport`).

Both charts draw every mean with its interval over seeds, so a gap inside the whiskers reads as noise; the grid's
axis always includes the target's adapter alone and the majority class, the two references a score needs.
"""

from __future__ import annotations

import plotly.graph_objects as go

from fusionlab.dashboard.charts import GRID, NEUTRAL, adapter_tick, style_figure
from fusionlab.dashboard.colors import adapter_color
from fusionlab.dashboard.errors import DashboardError
from fusionlab.fusion.registry import fusion_class
from fusionlab.metrics import METRIC_RANGES, metric_label
from fusionlab.sweep.analysis import SweepReport, sweep_report
from fusionlab.sweep.group import SweepError, list_sweeps, load_record
from fusionlab.workspace import Workspace

__all__ = ["effect_chart", "grid_chart", "list_sweeps", "report_of", "summary_lines"]


def report_of(workspace: Workspace, name: str) -> SweepReport:
    """The report of sweep ``name``; a :class:`DashboardError` saying why when its record cannot be read."""
    try:
        return sweep_report(workspace, load_record(workspace, name))
    except SweepError as err:
        raise DashboardError(str(err)) from None


METHOD_SYMBOLS = ("circle", "diamond", "square", "triangle-up")


def _whiskers(low: list[float], mean: list[float], high: list[float]) -> dict[str, object]:
    return {
        "type": "data",
        "symmetric": False,
        "array": [h - m for h, m in zip(high, mean)],
        "arrayminus": [m - lo for lo, m in zip(low, mean)],
        "thickness": 1.5,
    }


def grid_chart(report: SweepReport) -> go.Figure | None:
    """Each subset (rows, smallest first) × method (marker): mean dev score over seeds with its interval, and
    vertical lines at the target's adapter alone and at the majority class."""
    if not report.grid:
        return None
    methods = sorted({c.method for c in report.grid})
    subsets = sorted({c.subset for c in report.grid}, key=lambda s: (len(s), s))
    labels = ["+".join(s) for s in subsets]
    fig = go.Figure()
    for i, method in enumerate(methods):
        ordered = sorted((c for c in report.grid if c.method == method), key=lambda c: subsets.index(c.subset))
        means = [c.score.mean for c in ordered]
        low, high = METRIC_RANGES.get(report.metric, (float("-inf"), float("inf")))
        fig.add_scatter(
            x=means,
            y=["+".join(c.subset) for c in ordered],
            mode="markers",
            name=f"{method} fusion",
            marker={"symbol": METHOD_SYMBOLS[i % len(METHOD_SYMBOLS)], "size": 10},
            error_x=_whiskers(
                [max(c.score.low, low) for c in ordered], means, [min(c.score.high, high) for c in ordered]
            ),  # a t-interval over few seeds can pass the metric's bounds: drawn up to them
            hovertext=[f"{report.target}+{'+'.join(c.subset)}, {method}: {c.score.text()}" for c in ordered],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    references = [(report.own_adapter, f"{report.target} adapter alone"), (report.majority, "majority class")]
    shown = sorted((v, t) for v, t in references if v is not None)
    for (value, text), side in zip(shown, ("top left", "top right")):  # the lower one's label left, the other right
        fig.add_vline(x=value, line_dash="dot", line_color=NEUTRAL, annotation_text=text, annotation_position=side)
    fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1], gridcolor=GRID)
    metric = metric_label(report.metric) if report.metric else "score"
    title = f"{report.name}: dev {metric} of each fusion over {report.target} + a subset of sources (mean over seeds, 95 % interval)"
    return style_figure(fig, title, f"dev {metric}", "sources fused with the target", height=220 + 28 * len(labels))


def effect_chart(report: SweepReport) -> go.Figure | None:
    """Each source: how much weight the fusion gives it (x, as a multiple of the even share) against how much it
    adds to the score (y, mean change when added, with its interval): leaning on a source is not the same as
    being helped by it."""
    effects = [e for e in report.effects if e.usage is not None]
    if not effects:
        return None
    fig = go.Figure()
    for i, method in enumerate(sorted({e.method for e in effects})):
        shown = [e for e in effects if e.method == method]
        means = [e.effect.mean for e in shown]
        fig.add_scatter(
            x=[e.usage for e in shown],
            y=means,
            mode="markers+text",
            name=f"{method} fusion",
            text=[adapter_tick(e.source) for e in shown],
            textposition="middle right",
            marker={
                "symbol": METHOD_SYMBOLS[i % len(METHOD_SYMBOLS)],
                "size": 11,
                "color": [adapter_color(e.source) for e in shown],
            },
            error_y=_whiskers([e.effect.low for e in shown], means, [e.effect.high for e in shown]),
            hovertext=[
                f"adding {e.source} ({method}): {e.effect.text(signed=True)}; weight {e.usage:.2f}× the even share"
                for e in shown
            ],
            hovertemplate="%{hovertext}<extra></extra>",
        )
    fig.add_hline(y=0, line_color=NEUTRAL)
    widest = max(e.usage for e in effects if e.usage is not None)
    fig.update_xaxes(range=[0, max(2.0, 1.1 * widest)])  # from "ignored" to twice the even share at least:
    # a briefly trained fusion stays near 1, and an axis zoomed onto 0.998–1.000 would make that look like a choice
    fig.add_vline(x=1, line_dash="dot", line_color=NEUTRAL, annotation_text="even share", annotation_position="top")
    metric = metric_label(report.metric) if report.metric else "score"
    title = "Does the fusion lean on the sources that help? Weight given vs score added"
    return style_figure(fig, title, "mean fusion weight ÷ even share 1/N", f"change of dev {metric} when added")


def summary_lines(report: SweepReport) -> list[str]:
    """Progress, the best subset per method and its margin, and the method facts a reader needs."""
    lines = [f"{report.finished} of {report.total} runs finished."]
    lines += [best.text() + "." for best in report.best]
    learned = [m for m in {c.method for c in report.grid} if not fusion_class(m).learns_weights]
    if learned:
        lines.append(f"{', '.join(learned)} fusion learns no weights: its usage is the even share by construction.")
    return lines
