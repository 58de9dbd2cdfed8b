"""The Runs page's data: the run history as a table, curves of several runs, config diffs, dev-set fusion
statistics, confusion matrices and a downloadable zip of a run's artifacts.

Everything is computed from the run store and the workspace, never from session state, so the page shows the
same thing after a reload, in a second tab, or while a worker started from the CLI is writing.
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from pandas.io.formats.style import Styler

from fusionlab.checkpoint import pinned_adapter_dir, read_meta, workspace_root_of
from fusionlab.dashboard.visitors import Visitor, owner_label, shown_path
from fusionlab.data.tasks import TASKS
from fusionlab.metrics import metric_label
from fusionlab.reported import BELOW_MAJORITY, LEARNED, Reported
from fusionlab.runspec import FusionStats, RunKind, RunResult, layers_frame, run_result

__all__ = [
    "CANCELLED",
    "FAILED",
    "FINISHED",
    "STATUSES",
    "Reported",
    "run_result",
]  # for the Runs page, with the functions below
from fusionlab.runspec import run_task as stored_run_task
from fusionlab.runstore import CANCELLED, FAILED, FINISHED, STATUSES, Run, RunStore, Snapshot
from fusionlab.workspace import CHECKPOINT_MARKER

HISTORY_COLUMNS = [
    "id",
    "kind",
    "name",
    "task",
    "owner",
    "status",
    "created",
    "started",
    "ended",
    "duration_s",
    "metric",
    "score",
    "interval",
    "vs_own_adapter",
    "error",
]
CURVE_COLUMNS = ["run_id", "run", "step", "value"]
DIFF_COLUMNS = ["key", "A", "B", "differs"]
ABSENT = "(absent)"
"""How :func:`config_diff` shows a key that one of the two configs lacks."""

DIFF_HIGHLIGHT = "background-color: rgba(255, 189, 69, 0.35)"
"""Amber, translucent: readable under both the light and the dark theme's text colour."""


class ArtifactsUnavailableError(FileNotFoundError):
    """A run's recorded checkpoint can no longer be downloaded: it was deleted, moved or overwritten."""


def run_task(run: Run) -> str | None:
    """The task a run trains for: ``task`` of an adapter run, ``target_task`` of a fusion run."""
    return stored_run_task(run.kind, run.config)


def comparison_link(run: Run) -> str | None:
    """The Compare methods page's link to a finished comparison run (``None`` for any other run)."""
    if run.kind != RunKind.COMPARE or run.status != FINISHED:
        return None
    return f"compare?comparison={quote(run.name)}"


def run_ref(run: Run) -> str:
    """A run as a link names it, e.g. ``#7 rte-attention``: id and name never change (the status does), so a
    copied link keeps selecting the same runs."""
    return f"#{run.id} {run.name}"


def run_label(run: Run) -> str:
    """A short, unique label for pickers and legends, e.g. ``#7 rte-attention (finished)``."""
    return f"#{run.id} {run.name} ({run.status})"


def main_metric(run: Run) -> str | None:
    """The name of the metric a finished run is judged by, as it recorded it (``None`` before it has ended)."""
    result = run_result(run)
    return result.main_metric if result is not None else None


def result_line(run: Run) -> str | None:
    """A finished run's main metric with its interval and, for a fusion, its paired difference from its own
    adapter (:meth:`~fusionlab.runspec.RunResult.summary_text`); ``None`` before it has ended."""
    result = run_result(run)
    return result.summary_text() if result is not None else None


def uncertainty_cells(result: RunResult | None) -> dict[str, str | None]:
    """What makes a history row's score readable: its 95 % interval with the examples it is on, and a fusion's
    paired difference from its own adapter with the verdict ("within noise" where the interval includes 0)."""
    interval = result.score_interval if result is not None else None
    difference = result.own_adapter_difference if result is not None else None
    return {
        "interval": f"{interval.bounds_text()} (n={interval.examples:,})" if interval is not None else None,
        "vs_own_adapter": difference.text() if difference is not None else None,
    }


NOT_RANKED = " (no interval: not ranked)"


@dataclass(frozen=True)
class ScoreTile:
    """One dev metric of a finished run as a tile: its value and how it stands against the majority class."""

    metric: str
    value: str
    delta: str | None
    ranked: bool
    """Whether the delta may be coloured as a gain or a loss: only where the interval is beyond the majority."""


def score_tiles(result: RunResult) -> list[ScoreTile]:
    """A tile per dev metric. The main metric's difference from the majority class is coloured only where its
    interval lies wholly on one side of it (:meth:`~fusionlab.reported.Reported.learned`), and says "within
    noise" where it does not; the other metrics have no interval, so theirs is shown uncoloured and says so. A green arrow
    on a score that is not beyond always answering the most frequent class would rank noise."""
    verdict = Reported.from_result(result).learned()
    tiles = []
    for metric, value in result.metrics.items():
        base = result.majority_baseline.get(metric)
        delta = None if base is None else f"{value - base:+.3f} vs majority class"
        ranked = False
        if delta is not None and metric == result.main_metric:
            ranked = verdict in (LEARNED, BELOW_MAJORITY)
            delta += "" if ranked else (" (within noise)" if verdict is not None else NOT_RANKED)
        elif delta is not None:  # a run records the main metric's interval only
            delta += NOT_RANKED
        tiles.append(ScoreTile(metric, f"{value:.3f}", delta, ranked))
    return tiles


def _local_time(seconds: pd.Series) -> pd.Series:
    """Unix seconds as timezone-aware datetimes in the server's zone (``NaT`` where the time is unset)."""
    zone = datetime.now().astimezone().tzinfo
    return pd.to_datetime(seconds.astype("float64"), unit="s", utc=True).dt.tz_convert(zone)


def history_display(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`history_frame` as the page shows it: times, durations and scores as text, an empty cell where a run
    has none yet (Streamlit's table writes "None" in any empty number or time cell, whatever the format). The text
    still sorts right: times as ``YYYY-MM-DD HH:MM:SS`` / ``HH:MM:SS``, durations zero-padded ``HH:MM:SS``."""
    shown = frame.copy()
    texts = {
        "created": lambda t: t.strftime("%Y-%m-%d %H:%M:%S"),
        "started": lambda t: t.strftime("%H:%M:%S"),
        "ended": lambda t: t.strftime("%H:%M:%S"),
        "duration_s": _clock,
        "score": lambda v: f"{v:.3f}",
    }
    for column, text in texts.items():
        shown[column] = [text(v) if pd.notna(v) else "" for v in frame[column]]
    return shown


def _clock(seconds: float) -> str:
    whole = round(float(seconds))
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def mine(runs: list[Run], visitor: Visitor) -> list[Run]:
    """The runs this visitor queued (the Runs page's "only my runs" on a shared server)."""
    return [run for run in runs if run.owner is not None and run.owner == visitor.owner_id]


def history_frame(runs: list[Run], visitor: Visitor | None = None) -> pd.DataFrame:
    """One row per run (columns :data:`HISTORY_COLUMNS`), in the order given (the store lists newest first).

    ``owner`` is who queued it: "you" for ``visitor``'s own runs, else the name they showed (empty for runs
    queued outside the dashboard).

    ``score`` is the final dev value of ``metric``, the task's main metric, ``interval`` its 95 % interval and
    ``vs_own_adapter`` a fusion's paired difference from its own adapter (:func:`uncertainty_cells`); ``error`` is the first line of a
    failed run's error (the rest is its traceback, for the detail view); ``duration_s`` runs up to now for a
    run still running.
    """
    now = datetime.now().timestamp()
    rows = []
    for run in runs:
        end = run.ended_at if run.ended_at is not None else now
        result = run_result(run)  # parsed once per row: the score, its interval and its difference
        rows.append(
            {
                "id": run.id,
                "kind": run.kind,
                "name": run.name,
                "task": run_task(run),
                "owner": owner_label(run, visitor) if visitor is not None else (run.owner_name or ""),
                "status": run.status,
                "created": run.created_at,
                "started": run.started_at,
                "ended": run.ended_at,
                "duration_s": end - run.started_at if run.started_at is not None else None,
                "metric": metric_label(result.main_metric) if result is not None else None,
                "score": result.score if result is not None else None,
                **uncertainty_cells(result),
                "error": error_first_line(run),
            }
        )
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    for column in ("task", "owner", "metric", "interval", "vs_own_adapter", "error"):  # empty, never "None"
        frame[column] = frame[column].fillna("")
    for column in ("created", "started", "ended"):
        frame[column] = _local_time(frame[column])
    return frame.astype({"id": "int64", "duration_s": "float64", "score": "float64"})


def filter_history(
    frame: pd.DataFrame,
    kinds: list[str] | None = None,
    statuses: list[str] | None = None,
    tasks: list[str] | None = None,
    text: str = "",
) -> pd.DataFrame:
    """The rows of a :func:`history_frame` matching every given filter (an empty filter matches all).

    ``text`` matches the run name case-insensitively as a plain substring, so names with ``+`` or ``.``
    need no escaping.
    """
    mask = pd.Series(True, index=frame.index)
    if kinds:
        mask &= frame["kind"].isin(kinds)
    if statuses:
        mask &= frame["status"].isin(statuses)
    if tasks:
        mask &= frame["task"].isin(tasks)
    if text.strip():
        mask &= frame["name"].str.contains(text.strip(), case=False, regex=False)
    return frame[mask]


def requested_index(runs: list[Run], requested: str | None) -> int:
    """Which of ``runs`` the detail view opens on: the one the URL asks for (``?run=7``), else the newest
    finished run (the newest run may still be queued, with nothing to show), else the newest.

    A link to a run that no longer exists, or a mistyped one, still opens the page on a real run.
    """
    ids = [run.id for run in runs]
    wanted = (requested or "").strip().lstrip("#")
    if wanted.isdigit() and int(wanted) in ids:
        return ids.index(int(wanted))
    return next((i for i, run in enumerate(runs) if run.status == FINISHED), 0)


def default_overlay(runs: list[Run], count: int = 3) -> list[int]:
    """The runs whose curves are overlaid before the user picks: the newest finished ones (else the newest that
    have started: only a started run has curves) of one task, the newest one's, so that one dev-metric axis
    holds one task's scores (RTE accuracy next to SST-2 accuracy would compare nothing)."""
    candidates = [run for run in runs if run.status == FINISHED] or [run for run in runs if run.started_at]
    if not candidates:
        return []
    task = run_task(candidates[0])
    return [run.id for run in candidates if run_task(run) == task][:count]


def error_first_line(run: Run) -> str | None:
    """The readable first line of a failed run's error (``ValueError: ...``), without the traceback."""
    if not run.error:
        return None
    return run.error.strip().splitlines()[0]


def metric_names(store: RunStore, run_ids: list[int]) -> list[str]:
    """Every metric name the given runs logged, sorted, for a metric picker."""
    names: set[str] = set()
    for run_id in run_ids:
        names.update(store.metrics(run_id)["name"])
    return sorted(names)


def dev_metric_names(names: list[str]) -> list[str]:
    """The in-training evaluations among logged metric names (the trainer logs them as ``eval_<metric>``; they
    are measured on the selection split carved from train, which chooses the kept step, not on the dev split)."""
    return [name for name in names if name.startswith("eval_")]


def dev_metric_for(run: Run, metrics: pd.DataFrame) -> str:
    """The dev metric to plot for a run: its main metric as logged (``eval_<metric>``), else whichever dev
    metric it did log (a user task's main metric is unknown to the dashboard until the run has finished)."""
    task = TASKS.get(run_task(run) or "")  # a live run has no result yet: its built-in task says what it is judged by
    preferred = f"eval_{main_metric(run) or (task.main_metric if task else 'accuracy')}"
    logged = dev_metric_names(sorted(set(metrics["name"])))
    return preferred if preferred in logged or not logged else logged[0]


def run_curve(run: Run, metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric of one run in long form (:data:`CURVE_COLUMNS`), from the run's :meth:`RunStore.metrics`.

    NaN values (a diverged loss) are kept, so the chart shows them as gaps rather than hiding the divergence.
    """
    rows = metrics[metrics["name"] == metric]
    frame = pd.DataFrame({"run_id": run.id, "run": run_label(run), "step": rows["step"], "value": rows["value"]})
    return frame.reset_index(drop=True)[CURVE_COLUMNS]


def curves(store: RunStore, run_ids: list[int], metric: str) -> pd.DataFrame:
    """One metric of several runs in long form (:data:`CURVE_COLUMNS`), for one line per run.

    ``run`` is the run's label, so a legend tells runs with the same name apart. Runs that never logged the
    metric contribute no rows.
    """
    frames = [run_curve(store.get(run_id), store.metrics(run_id), metric) for run_id in run_ids]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class CurveMarks:
    """What one run's curves are read against: chance, and the step whose weights it kept.

    ``majority`` is the majority-class baseline the run recorded (:attr:`RunResult.majority_baseline`, on its dev
    split), keyed by metric name without the ``eval_`` prefix; ``best_step`` is the step it kept, the best on the
    selection split (``None`` until the run has finished).
    """

    run: str
    """The run's label (:func:`run_label`), as in a :func:`curves` frame's ``run`` column."""
    num_labels: int | None = None
    majority: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None

    @property
    def chance_loss(self) -> float | None:
        """The cross-entropy of a uniform guess over the labels, ln(number of labels): a loss above it has
        learned nothing yet (``None`` when the number of labels is unknown)."""
        return math.log(self.num_labels) if self.num_labels and self.num_labels >= 2 else None

    def chance(self, metric: str) -> float | None:
        """The chance level of a logged metric: ln(labels) for the training loss, the majority-class baseline
        for a score (``eval_accuracy`` → ``majority["accuracy"]``), else ``None``."""
        if metric == "loss":
            return self.chance_loss
        return self.majority.get(metric.removeprefix("eval_")) if metric.startswith("eval_") else None


def _num_labels(run: Run, labels: list[str]) -> int | None:
    """How many labels the run's task has: as its result recorded them, else its built-in task's, else its
    adapter config's (a user's task before the run has finished: unknown)."""
    if labels:
        return len(labels)
    task = TASKS.get(run_task(run) or "")
    if task is not None:
        return task.num_labels
    adapter_config = run.config.get("adapter_config") if isinstance(run.config, dict) else None
    names = adapter_config.get("label_names") if isinstance(adapter_config, dict) else None
    return len(names) if isinstance(names, list) and len(names) >= 2 else None


def curve_marks(run: Run) -> CurveMarks:
    """The chance levels and kept step of ``run``'s curves (:class:`CurveMarks`); a result this fusionlab cannot
    read gives none of the result's marks, never an error."""
    try:
        result = run_result(run)
    except ValueError:
        result = None
    if result is None:
        return CurveMarks(run_label(run), _num_labels(run, []))
    return CurveMarks(
        run_label(run),
        _num_labels(run, list(result.label_names)),
        dict(result.majority_baseline),
        result.best_step,
    )


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (``training_config.max_steps``); lists stay whole."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


NOT_SET = "not set"


def _shown(value: Any, paths_visible: bool = True) -> str:
    """A config value as text: JSON, so ``1`` and ``"1"`` stay distinguishable; an unset value (None) reads
    :data:`NOT_SET` (a string value "not set" would show in quotes). An absolute path is cut to its last part
    unless ``paths_visible`` (see :func:`~fusionlab.dashboard.visitors.sees_server_paths`)."""
    if value is None:
        return NOT_SET
    if not paths_visible and isinstance(value, str) and Path(value).is_absolute():
        value = shown_path(value, False)
    return json.dumps(value, sort_keys=True)


def config_diff(run_a: Run, run_b: Run, paths_visible: bool = True) -> pd.DataFrame:
    """The two runs' configs side by side (:data:`DIFF_COLUMNS`), one row per flattened dotted key.

    The run kind is compared too (row ``kind``), since an adapter and a fusion run share few keys. Values are
    JSON text (so a column never mixes types); a key only one config has shows :data:`ABSENT` on the other
    side. Rows are sorted by key; ``differs`` marks the rows to highlight. Absolute paths (the data directory,
    a user's file) show only their last part unless ``paths_visible``.
    """
    flat_a = {"kind": run_a.kind, **flatten(run_a.config)}
    flat_b = {"kind": run_b.kind, **flatten(run_b.config)}
    rows = []
    for key in sorted(set(flat_a) | set(flat_b)):
        a = _shown(flat_a[key], paths_visible) if key in flat_a else ABSENT
        b = _shown(flat_b[key], paths_visible) if key in flat_b else ABSENT
        rows.append({"key": key, "A": a, "B": b, "differs": a != b})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def highlight_differences(diff: pd.DataFrame) -> Styler:
    """A :func:`config_diff` frame styled with the differing rows highlighted (``st.dataframe`` shows it)."""

    def row_style(row: pd.Series) -> list[str]:
        return [DIFF_HIGHLIGHT if row["differs"] else ""] * len(row)

    return diff.style.apply(row_style, axis=1)


def weights_frame(layers: list[list[float]], adapter_names: list[str]) -> pd.DataFrame:
    """Fusion weights ``[layer][adapter]`` as a frame indexed ``layer 1..L`` with one column per adapter."""
    return layers_frame(layers, list(adapter_names))


def snapshots_by_step(store: RunStore, run_id: int) -> dict[int, Snapshot]:
    """A run's fusion-weight snapshots by training step (the last one of a step: the end may repeat a step)."""
    return {snapshot.step: snapshot for snapshot in store.snapshots(run_id)}


def weight_trajectory(snapshots: dict[int, Snapshot]) -> pd.DataFrame:
    """Each adapter's fusion weight (mean over layers) at every snapshot (:func:`snapshots_by_step`): columns
    ``step``, ``adapter``, ``weight``. Empty for a run without snapshots."""
    rows = []
    for snapshot in snapshots.values():
        frame = weights_frame(snapshot.payload.get("layers") or [], snapshot.payload.get("adapter_names") or [])
        for adapter, weight in frame.mean(axis=0).items():
            rows.append({"step": snapshot.step, "adapter": adapter, "weight": float(weight)})
    return pd.DataFrame(rows, columns=["step", "adapter", "weight"])


def fusion_stats(run: Run) -> FusionStats | None:
    """The dev-set fusion statistics of a finished fusion run; ``None`` for other runs or an empty record."""
    result = run_result(run)
    return result.fusion_stats if result is not None and result.fusion_stats and result.fusion_stats.mean else None


def confusion(run: Run) -> tuple[list[list[int]], list[str]] | None:
    """A finished run's dev confusion matrix ``[gold][predicted]`` and its label names, if it recorded one."""
    result = run_result(run)
    if result is None or not result.confusion_matrix or not result.label_names:
        return None
    return result.confusion_matrix, result.label_names


def checkpoint_path(run: Run) -> Path | None:
    """The checkpoint directory a run recorded (``None`` for a run that produced none: failed, cancelled...)."""
    checkpoint = (run.artifacts or {}).get("checkpoint")
    return Path(checkpoint) if checkpoint else None


def checkpoint_problem(run: Run) -> str | None:
    """Why a run's recorded checkpoint cannot be downloaded, or ``None`` if it can (or there is none).

    Checkpoints are named after their adapter or fusion, so retraining under the same name replaces the
    directory: a checkpoint whose metadata was written after this run ended belongs to a later run, and
    offering it as this run's would be wrong.
    """
    path = checkpoint_path(run)
    if path is None:
        return None
    marker = path / CHECKPOINT_MARKER
    if not marker.is_file():
        return f"the checkpoint of run {run.id} is gone: {path} was deleted or moved after the run finished"
    if run.ended_at is not None and marker.stat().st_mtime > run.ended_at:
        return (
            f"the checkpoint of run {run.id} was overwritten: {path} now holds the checkpoint of a later run "
            "with the same name"
        )
    return None


def run_record(store: RunStore, run: Run) -> dict[str, Any]:
    """Everything the store knows about a run as one JSON-able dict: config, results, metric history and
    fusion-weight snapshots, so a downloaded run can be analysed without the workspace."""
    history = store.metrics(run.id)[["step", "name", "value"]]
    return {
        "id": run.id,
        "kind": run.kind,
        "name": run.name,
        "status": run.status,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "device": run.device,
        "error": run.error,
        "config": run.config,
        "final_metrics": run.final_metrics,
        "artifacts": run.artifacts,
        "history": [
            {"step": int(step), "name": name, "value": None if pd.isna(value) else float(value)}
            for step, name, value in history.itertuples(index=False)
        ],
        "snapshots": [{"step": snap.step, **snap.payload} for snap in store.snapshots(run.id)],
    }


def archive_name(run: Run) -> str:
    """The zip's file name (and top folder): ``run-7-rte-attention``, safe on every file system."""
    return f"run-{run.id}-{re.sub(r'[^A-Za-z0-9_.+-]', '_', run.name) or 'unnamed'}"


def artifact_zip(store: RunStore, run: Run) -> bytes:
    """A zip of the run that works on its own: ``<archive_name>/run.json`` (:func:`run_record`) and, if the run
    recorded a checkpoint, a small workspace beside it: an adapter under ``adapters/<name>/``; a fusion under
    ``fusions/<name>/`` with every adapter it fuses, in the exact version it was trained on, under
    ``adapters/``. ``FusionModel.from_pretrained("<archive>/fusions/<name>")`` then loads without anything else
    (a fusion looks for its adapters beside its own folder), and so does ``FUSIONLAB_HOME=<archive>``.

    Raises :class:`ArtifactsUnavailableError` when the recorded checkpoint (or an adapter a fusion needs) is
    gone or was overwritten (see :func:`checkpoint_problem`) rather than silently leaving it out.
    """
    problem = checkpoint_problem(run)
    if problem:
        raise ArtifactsUnavailableError(problem)
    top = archive_name(run)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{top}/run.json", json.dumps(run_record(store, run), indent=2, sort_keys=True) + "\n")
        for folder, path in _checkpoint_folders(run):
            for file in sorted(p for p in path.iterdir() if p.is_file()):
                archive.write(file, f"{top}/{folder}/{file.name}")
    return buffer.getvalue()


def _checkpoint_folders(run: Run) -> list[tuple[str, Path]]:
    """``(folder in the zip, directory on disk)`` for the run's checkpoint and, for a fusion, its adapters."""
    path = checkpoint_path(run)
    if path is None:
        return []
    meta = read_meta(path)
    if meta["kind"] == "adapter":
        return [(f"adapters/{path.name}", path)]
    folders = [(f"fusions/{path.name}", path)]
    adapters_dir = workspace_root_of(path) / "adapters"
    for entry in meta["adapters"]:
        pinned = pinned_adapter_dir(adapters_dir / entry["name"], entry["content_hash"])
        if pinned is None:
            raise ArtifactsUnavailableError(
                f"adapter {entry['name']!r}, which fusion {path.name!r} was trained on, is no longer in "
                f"{adapters_dir} in that version"
            )
        folders.append((f"adapters/{entry['name']}", pinned))
    return folders
