"""The Runs page's "which adapters each fusion uses" heatmap (the AdapterFusion paper's Figure 5).

It follows the house style of :mod:`fusionlab.dashboard.charts` (left title, axis titles, transparent
background, adapter colour swatches on the ticks, Viridis for weights). The colour scale is the absolute 0–1
of a softmax, never stretched to the data: the point of the figure is how far each weight is from the row's
even share 1/N, and a stretched scale would make a near-uniform fusion look decisive. Each cell's hover gives
the value, 1/N and the difference, plus the per-layer weights the average hides.
"""

from __future__ import annotations

import plotly.graph_objects as go

from fusionlab.dashboard.charts import adapter_tick, weight_heatmap
from fusionlab.usage import EXPLANATION, UsageMatrix, UsageRow, adapter_usage

__all__ = ["EXPLANATION", "adapter_usage", "adapter_usage_heatmap", "cell_hover"]

TITLE = "Which adapters each fusion uses: mean fusion weight on the dev set"


def cell_hover(row: UsageRow, adapter: str) -> str:
    """Hover text of one cell: the weight against the even share, then layer by layer; empty when the fusion
    has no such adapter (the cell is a gap, with no hover)."""
    value, layers = row.value(adapter), row.per_layer(adapter)
    if value is None or layers is None:
        return ""
    per_layer = " ".join(f"{w:.3f}" for w in layers)
    return (
        f"{row.label}<br>adapter {adapter}: {value:.3f}"
        f"<br>even share 1/{row.num_adapters} = {row.even_share:.3f} (difference {value - row.even_share:+.3f})"
        f"<br>per layer (1 to {len(layers)}): {per_layer}"
    )


def adapter_usage_heatmap(matrix: UsageMatrix) -> go.Figure | None:
    """Fusions (rows, first at the top) × source adapters (columns); ``None`` when no fusion has statistics,
    so the page can say so instead of drawing an empty chart."""
    if not matrix.rows or not matrix.adapters:
        return None
    values = matrix.values()
    fig = weight_heatmap(
        values,
        [[cell_hover(row, adapter) for adapter in matrix.adapters] for row in matrix.rows],
        TITLE,
        x=(range(len(matrix.adapters)), [adapter_tick(name) for name in matrix.adapters], "source adapter"),
        y=([row.label for row in matrix.rows], [row.label for row in matrix.rows], "target task (fusion, method)"),
        text=[["" if v is None else f"{v:.2f}" for v in line] for line in values],
        height=180 + 50 * len(matrix.rows),
    )
    fig.update_traces(xgap=2, ygap=2)
    return fig.update_yaxes(autorange="reversed")  # the first fusion at the top, as in a table
