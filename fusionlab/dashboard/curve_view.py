"""The learning curves of a workspace (and of the pack) on the dashboard: read, summarised, drawn.

``fusionlab curve`` writes each curve to ``<workspace>/curves/<target>-<method>.json``; the pack may ship some in
its own ``curves/``. This module lists them (a broken file is reported by name, never half-shown) and draws one:
accuracy against the number of training examples, the adapter alone and the fusion, every seed's score with its
interval, and the mean over seeds as a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from fusionlab.curve import CURVES_DIR, LearningCurve, seed_intervals
from fusionlab.dashboard.charts import style_figure
from fusionlab.metrics import metric_label
from fusionlab.pack.store import pack_dir
from fusionlab.workspace import Workspace

MAX_LISTED = 50
ADAPTER_COLOR, FUSION_COLOR = "#7f7f7f", "#1f77b4"


@dataclass(frozen=True)
class SavedCurve:
    """One curve file: where it is, and the curve or why it cannot be read."""

    name: str
    source: str  # "workspace" or "pack"
    curve: LearningCurve | None
    error: str | None = None


def saved_curves(workspace: Workspace, include_pack: bool = True) -> list[SavedCurve]:
    """The workspace's curves, then the pack's (newest first within each)."""
    pack_root = pack_dir() if include_pack else None
    found = []
    for source, root in (("workspace", workspace.root), ("pack", pack_root)):
        directory = root / CURVES_DIR if root is not None else None
        if directory is None or not directory.is_dir():
            continue
        files = sorted(directory.glob("*.json"), key=lambda f: f.stat().st_mtime, reverse=True)
        found += [_read(file, source) for file in files[:MAX_LISTED]]
    return found


def _read(file: Path, source: str) -> SavedCurve:
    try:
        return SavedCurve(file.stem, source, LearningCurve.load(file))
    except (OSError, ValueError, TypeError, KeyError) as err:
        kind = "is not valid JSON" if isinstance(err, json.JSONDecodeError) else "cannot be read"
        return SavedCurve(file.stem, source, None, f"{file.name} {kind}: {err}")


def describe(curve: LearningCurve) -> str:
    """Plain text (the page escapes it): what was measured, how, and what it says size by size."""
    plan = curve.plan
    verdicts = "; ".join(
        f"k={r.size:,}: {r.gain:+.3f} (paired, per seed: {seed_intervals(curve, r.size)}; {r.verdict()})"
        for r in curve.summary()
    )
    pending = sorted({size for size, _ in curve.pending()})
    still = f" Not measured yet: k={', '.join(f'{k:,}' for k in pending)}." if pending else ""
    return (
        f"Target {plan.target}: its adapter trained on k examples alone, against the {plan.method} fusion of it with "
        f"{', '.join(plan.sources)} trained on the same k examples; {len(plan.seeds)} seed(s), each another random "
        f"subset. Both selected on the selection split carved from train, scored on the whole dev split "
        f"({curve.points[0].fusion.examples:,} examples) with 95 % intervals. Fusion's gain (mean over seeds, and "
        f"whether each seed's paired interval excludes 0): {verdicts}.{still}"
        if curve.points
        else f"Target {plan.target}: no point measured yet."
    )


def curve_chart(curve: LearningCurve) -> go.Figure | None:
    """Score against training-set size: each seed's score with its interval (markers), the mean over seeds
    (lines); the size axis is logarithmic (sizes grow by factors), the score axis starts at 0.5 or lower so a
    few points of gain are neither hidden nor magnified."""
    if not curve.points:
        return None
    fig = go.Figure()
    for label, attr, color, shift in (
        ("adapter alone", "adapter", ADAPTER_COLOR, 0.97),
        ("fusion", "fusion", FUSION_COLOR, 1.03),
    ):
        scores = [(p.size, getattr(p, attr)) for p in sorted(curve.points, key=lambda p: (p.size, p.seed))]
        fig.add_trace(
            go.Scatter(
                x=[size * shift for size, _ in scores],  # side by side at each size, not on top of each other
                y=[s.value for _, s in scores],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [s.high - s.value for _, s in scores],
                    "arrayminus": [s.value - s.low for _, s in scores],
                },
                mode="markers",
                marker={"color": color, "size": 7, "opacity": 0.6},
                name=f"{label}, each seed (95 % interval)",
            )
        )
        summary = curve.summary()
        fig.add_trace(
            go.Scatter(
                x=[r.size for r in summary],
                y=[getattr(r, attr) for r in summary],
                mode="lines",
                line={"color": color, "width": 3},
                name=f"{label}, mean over seeds",
            )
        )
    lowest = min(min(p.adapter.low, p.fusion.low) for p in curve.points)
    metric = metric_label(curve.main_metric)
    style_figure(
        fig,
        f"{metric.capitalize()} against training examples: {curve.plan.target}",
        "training examples k",
        f"dev {metric}",
    )
    fig.update_xaxes(type="log", tickvals=sorted({p.size for p in curve.points}))
    fig.update_yaxes(range=[min(0.5, lowest - 0.02), 1.0])
    return fig
