"""The "Compare methods" page's logic: the comparisons saved in a workspace, read and summarised (no Streamlit).

``fusionlab compare`` (or ``bench/compare_methods.py``) writes each comparison to
``<workspace>/comparisons/<target>-s<seed>/comparison.json``; this module lists them, reads each one through
:class:`~fusionlab.composition.results.Comparison` (a broken file is reported by name, never shown half-read),
and turns one into the rows and the caption the page shows. The charts are in
:mod:`fusionlab.dashboard.compare_charts`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.composition.compare import RESULT_FILE
from fusionlab.composition.methods import methods
from fusionlab.composition.results import MAX_COMPARE_STEPS, CompareOptions, Comparison
from fusionlab.composition.run import CompareRun
from fusionlab.composition.session import COMPARISONS_DIR
from fusionlab.data.tasks import get_task
from fusionlab.metrics import metric_label
from fusionlab.runstore import QUEUED, RUNNING, RunStore
from fusionlab.workspace import Workspace

__all__ = ["MAX_COMPARE_STEPS", "CompareOptions", "method_names"]  # for the page's form, with the functions below

MAX_LISTED = 200
"""At most this many comparisons are listed (newest first): a page never reads an unbounded directory."""


@dataclass(frozen=True)
class SavedComparison:
    """One ``comparison.json``: its directory name, and either the comparison or why it cannot be read."""

    slug: str
    path: Path
    comparison: Comparison | None
    error: str | None = None


def comparisons_root(workspace: Workspace) -> Path:
    return workspace.root / COMPARISONS_DIR


def saved_comparisons(workspace: Workspace) -> list[SavedComparison]:
    """Every finished comparison of ``workspace``, newest first; unreadable files come back with the reason."""
    root = comparisons_root(workspace)
    if not root.is_dir():
        return []
    files = [d / RESULT_FILE for d in root.iterdir() if d.is_dir() and (d / RESULT_FILE).is_file()]
    files.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    return [_read(f) for f in files[:MAX_LISTED]]


def comparisons_signature(workspace: Workspace) -> tuple[tuple[str, int], ...]:
    """Each ``comparison.json`` and its modification time: what a cache of the comparisons is keyed on."""
    root = comparisons_root(workspace)
    if not root.is_dir():
        return ()
    files = (d / RESULT_FILE for d in root.iterdir() if d.is_dir())
    return tuple(sorted((f.parent.name, f.stat().st_mtime_ns) for f in files if f.is_file()))


def _read(path: Path) -> SavedComparison:
    slug = path.parent.name
    try:
        return SavedComparison(slug, path, Comparison.load(path))
    except (OSError, ValueError, TypeError, KeyError) as err:  # json.JSONDecodeError is a ValueError
        kind = "is not valid JSON" if isinstance(err, json.JSONDecodeError) else "cannot be read"
        return SavedComparison(slug, path, None, f"{path.parent.name}/{path.name} {kind}: {err}")


def seconds_label(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


ORDER_NOTE = (
    "Methods beyond noise better than the adapter alone come first (best first); the adapter and every method "
    "within noise of it follow in the order they ran, not ranked; methods beyond noise worse come last."
)
UNPAIRED_NOTE = (
    "This comparison was saved before its rows were paired with the adapter alone: they are in the order the "
    "methods ran, not ranked, and no difference is known to be beyond noise. Run it again to measure that."
)


def order_note(comparison: Comparison) -> str:
    """The table's order in words, shown above it: a reader would otherwise take the rows for a ranking."""
    paired = any(r.vs_adapter is not None for r in comparison.results)
    return ORDER_NOTE if paired else UNPAIRED_NOTE


def cut_down_caption(comparison: Comparison) -> str:
    """What the cut-down chart shows, saying "bars" only where the points carry their intervals."""
    text = (
        "AdapterDrop (k): the first k layers run as the plain encoder, without adapters or fusion; the last layers "
        "keep them. Pruning (n): the adapter with the lowest mean fusion weight on a few training examples is "
        "removed, one at a time, n adapters left. Both are the same trained fusion, measured on the same dev "
        "examples and timed in the same round-robin as the methods above."
    )
    if all(p.interval is not None for p in [*comparison.adapter_drop, *comparison.pruning]):
        return text + " Bars: each point's 95 % interval."
    return text + " This comparison was saved before its points recorded their intervals."


def display_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """The comparison's table as the page shows it, in :meth:`Comparison.ranked_results`' order, the training
    time in words ("–" where the method trained nothing, where a number column would print "None"; the same in
    the text columns the adapter's own row leaves empty)."""
    rows = comparison.table(ranked=True)
    for row in rows:
        seconds = row.pop("training (s)")
        row["training"] = "–" if seconds is None else seconds_label(seconds)
        for column in ("95 % interval", "paired 95 %", "paired verdict"):  # text cells: "–", never "None"
            row[column] = row[column] or "–"
    return rows


def describe(comparison: Comparison) -> str:
    """Plain text (the page escapes it) under the page's title: what was compared, on what, with which budget, on which machine."""
    o = comparison.options
    return (
        f"Target {o.target}, over the adapters {', '.join(o.adapters)}; seed {o.seed}. Every trained method got "
        f"{o.max_steps} steps of batch {o.batch_size} at learning rate {o.learning_rate:g} (inputs cut to "
        f"{o.max_length} tokens). Scores: {metric_label(comparison.main_metric)} on {comparison.dev_examples} dev examples (the "
        f"task's fixed dev subset), each from its saved checkpoint loaded afresh; the majority class scores "
        f"{comparison.majority_baseline:.3f}. Latency: one batch of {o.latency_batch} dev inputs, median of "
        f"{o.latency_repeats} round-robin rounds on {comparison.device}, relative to the plain encoder "
        f"({comparison.base_latency_ms:.1f} ms)."
    )


def fresh_mismatches(comparison: Comparison) -> list[str]:
    """Methods whose fresh evaluation of the saved checkpoint differs from the training loop's last score."""
    return [r.method for r in comparison.results if not r.agrees_with_training]


def cut_down_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """Every AdapterDrop and pruning point as a row: its score with the interval, and what cutting the fusion
    down cost against the full fusion, paired on the same examples ("within noise" where that includes 0).
    Empty cells where the comparison was saved before points recorded intervals."""
    rows = []
    for curve, points in (("AdapterDrop", comparison.adapter_drop), ("pruning", comparison.pruning)):
        for p in points:
            rows.append(
                {
                    "curve": curve,
                    "point": p.label,
                    "adapters": ", ".join(p.adapters),
                    comparison.score_label: p.metric,
                    "95 % interval": p.interval.bounds_text() if p.interval else "",
                    "vs full fusion, paired": p.vs_full.text() if p.vs_full else "",
                    "latency vs encoder": comparison.latency_ratio(p),
                }
            )
    return rows


def method_details(comparison: Comparison) -> list[dict[str, Any]]:
    """What each method recorded beside its score (merge options, LoraHub's coefficients...), one row each."""
    rows = []
    for r in comparison.results:
        if r.details:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(r.details.items()))
            rows.append({"method": r.method, "details": shown, "checkpoint": r.checkpoint})
    return rows


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)


def playground_query(slug: str, comparison: Comparison) -> str | None:
    """The Playground's query string that opens this comparison's attention fusion beside its best merged (or
    searched) adapter, or None when it trained no attention fusion. Keys only: the Playground checks them."""
    if comparison.result("fusion:attention") is None:
        return None
    params = {"fusion": f"{slug}/fusion:attention"}
    single = [r for r in comparison.results if r.family in ("merging", "search")]
    if single:
        params["compare"] = f"{slug}/{max(single, key=lambda r: r.value).method}"
    return urlencode(params)


# -- starting a comparison from the page ---------------------------------------------------------------------
def method_names() -> list[str]:
    """Every registered composition method, as the form offers them (read when drawn: a method registered at
    run time is among them)."""
    return list(methods())


def queue_comparison(
    store: RunStore,
    workspace: Workspace,
    options: CompareOptions,
    data_dir: str | None = None,
    owner: str | None = None,
    owner_name: str | None = None,
) -> int:
    """Queue a ``compare`` run for the workspace's worker (as ``fusionlab compare`` does); returns its id.

    Checked here, while the user still looks at the form: the target task exists, every adapter is trained in
    the workspace, and no comparison of the same target and seed is queued or running (it would write the same
    directory). A finished one of that target and seed is replaced when the new one ends.
    """
    get_task(options.target)
    for name in options.adapters:
        try:
            read_meta(workspace.adapter_dir(name))
        except (CheckpointError, FileNotFoundError, ValueError):
            raise ValueError(f"adapter {name} is not trained in this workspace") from None
    run = CompareRun(options=options, data_dir=data_dir)
    pending = [r for r in store.list_runs(status=(QUEUED, RUNNING), kind=CompareRun.kind) if r.name == run.name]
    if pending:
        raise ValueError(f"comparison {run.name} is already queued or running (run #{pending[0].id})")
    return store.enqueue(run.kind, run.name, run.to_dict(), owner, owner_name)
