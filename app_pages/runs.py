"""Runs: the history of every run, curves of several runs overlaid, config diffs, one run in detail, and which
adapters each fusion on disk uses (the paper's Figure 5, from :mod:`fusionlab.usage`).

The run sections come from the run store (the logic lives in :mod:`fusionlab.dashboard.runs_view`); the run
shown in detail is kept in the URL (``?run=7``), so a copied link opens the same run. The usage section reads
the fusion checkpoints themselves, so it shows fusions that no run in this store produced.
"""

from __future__ import annotations

import streamlit as st

from fusionlab.dashboard import sweep_view
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.markdown import md
from fusionlab.dashboard.run_charts import (
    MAX_OVERLAID_RUNS,
    confusion_chart,
    curves_chart,
    fusion_heatmap,
    fusion_weight_bars,
    trajectory_chart,
)
from fusionlab.dashboard.runs_view import (
    CANCELLED,
    FAILED,
    FINISHED,
    STATUSES,
    Reported,
    archive_name,
    artifact_zip,
    checkpoint_path,
    checkpoint_problem,
    comparison_link,
    config_diff,
    confusion,
    curve_marks,
    curves,
    default_overlay,
    dev_metric_names,
    error_first_line,
    filter_history,
    fusion_stats,
    highlight_differences,
    history_display,
    history_frame,
    metric_label,
    metric_names,
    mine,
    requested_index,
    run_label,
    run_ref,
    run_result,
    run_task,
    score_tiles,
    snapshots_by_step,
    weight_trajectory,
    weights_frame,
)
from fusionlab.dashboard.usage_chart import EXPLANATION, adapter_usage, adapter_usage_heatmap
from fusionlab.dashboard.visitors import sees_server_paths
from fusionlab.dashboard.widgets import current_visitor, open_run_store, server_config, session_settings

ALL_EXAMPLES = "all dev examples"
RUN_PARAM = "run"  # ?run=7 opens run 7 in the detail section


def adapter_usage_section(workspace) -> None:
    """The paper's Figure 5 over the fusion checkpoints on disk: shown with or without runs in the store, since
    fusions trained with ``--inline`` or installed from the pack have none."""
    st.header("Which adapters each fusion uses")
    usage = adapter_usage(workspace)
    chart = adapter_usage_heatmap(usage)
    if chart is None:
        st.info("No fusion in this workspace has recorded fusion statistics yet; they appear here once one is trained.")
    else:
        st.plotly_chart(chart, key="runs_usage")
        st.caption(f"{EXPLANATION} Hover a cell for 1/N, the difference from it and the weight in every layer.")
    if usage.skipped:
        st.caption("Not shown: " + "; ".join(f"{md(name)} ({md(reason)})" for name, reason in usage.skipped))


def sweeps_section(workspace) -> None:
    """A sweep's grid and its sources' effects (``fusionlab sweep``), read from its finished runs."""
    st.header("Sweeps: which sources help")
    names = sweep_view.list_sweeps(workspace)
    if not names:
        st.info("No sweep in this workspace yet. `fusionlab sweep TARGET --sources A,B,C` queues one: a fusion over "
                "the target's adapter and each subset of the sources, for each method and seed.")  # fmt: skip
        return
    name = st.selectbox("Sweep", names, key="sweep", bind="query-params")
    try:
        report = sweep_view.report_of(workspace, name)
    except DashboardError as err:
        st.error(md(err))
        return
    st.caption(md(" ".join(sweep_view.summary_lines(report))))
    for figure in (sweep_view.grid_chart(report), sweep_view.effect_chart(report)):
        if figure is not None:
            st.plotly_chart(figure)
    if not report.grid:
        st.info("No run of this sweep has finished yet: its grid appears as they do.")


st.title("Runs")
try:
    workspace = session_settings().workspace
except DashboardError as err:
    st.error(md(err))
    st.stop()
store = open_run_store(workspace)
runs = store.list_runs()
if not runs:
    st.info("No runs yet. Queue adapter or fusion runs on the Train page; they appear here as soon as they are queued.")
    adapter_usage_section(workspace)
    st.stop()
by_id = {run.id: run for run in runs}


def label(run_id: int) -> str:
    return run_label(by_id[run_id])


def ref(run_id: int) -> str:
    """The pickers kept in the link name runs by id and name (their status changes)."""
    return run_ref(by_id[run_id])


# -- history -----------------------------------------------------------------------------------------------
st.header("History")
config, visitor = server_config(), current_visitor()
if config.classroom and st.toggle("Only my runs", key="runs_mine", bind="query-params"):
    runs_listed = mine(runs, visitor)
else:
    runs_listed = runs
history = history_frame(runs_listed, visitor)
kind_col, status_col, task_col, text_col = st.columns(4)
# The filters are kept in the link too, so a copied link shows the same rows.
kinds = kind_col.multiselect("Kind", sorted(history["kind"].unique()), key="runs_kinds", bind="query-params")
statuses = status_col.multiselect("Status", list(STATUSES), key="runs_statuses", bind="query-params")
task_names = sorted(t for t in history["task"].unique() if t)
tasks = task_col.multiselect("Task", task_names, key="runs_tasks", bind="query-params")
text = text_col.text_input("Name contains", max_chars=100, key="runs_text", bind="query-params")
shown = filter_history(history, kinds, statuses, tasks, text)
st.dataframe(
    history_display(shown),  # as text: an empty cell where a run has no time or score yet, never "None"
    hide_index=True,
    column_config={
        "id": st.column_config.NumberColumn("run", format="#%d"),
        "owner": st.column_config.TextColumn("queued by") if config.classroom else None,
        "created": st.column_config.TextColumn("queued at"),
        "started": st.column_config.TextColumn("started at"),
        "ended": st.column_config.TextColumn("ended at"),
        "duration_s": st.column_config.TextColumn("duration", help="hours:minutes:seconds"),
        "metric": st.column_config.TextColumn("main metric"),
        "score": st.column_config.TextColumn("dev score"),
        "interval": st.column_config.TextColumn("95 % interval", help="bootstrap over the dev examples (n)"),
        "vs_own_adapter": st.column_config.TextColumn(
            "vs its own adapter", help="a fusion minus its target's adapter on the same examples, paired 95 % interval"
        ),
        "error": st.column_config.TextColumn("error", width="large"),
    },
    key="runs_history",
)
st.caption(f"{len(shown)} of {len(history)} runs")

# -- curves ------------------------------------------------------------------------------------------------
st.header("Curves")
with_metrics = [run.id for run in runs if run.started_at is not None]
if not with_metrics:
    st.info("No run has started yet, so there are no curves.")
else:
    overlaid = st.multiselect(
        f"Runs to overlay (up to {MAX_OVERLAID_RUNS})",
        with_metrics,
        default=default_overlay(runs),
        format_func=ref,
        max_selections=MAX_OVERLAID_RUNS,
        key="runs_overlaid",
        bind="query-params",
    )
    dev_metrics = dev_metric_names(metric_names(store, overlaid))
    marks = [curve_marks(by_id[run_id]) for run_id in overlaid]
    loss_col, dev_col = st.columns(2)
    with loss_col:
        chart = curves_chart(curves(store, overlaid, "loss"), "loss", "Training loss", marks)
        if chart is None:
            st.info("None of the chosen runs has logged a training loss yet.")
        else:
            st.plotly_chart(chart, key="runs_loss")
            st.caption(
                "Cross-entropy on the training batches. Dotted: chance, the loss of a uniform guess over the "
                "labels (ln of their number); dashed: the step whose weights each run kept."
            )
    with dev_col:
        if not dev_metrics:
            st.info("None of the chosen runs has been evaluated during training yet.")
        else:
            dev_metric = st.selectbox(
                "Metric during training (selection split)",
                dev_metrics,
                format_func=metric_label,
                key="runs_dev_metric",
                bind="query-params",
            )
            chart = curves_chart(curves(store, overlaid, dev_metric), dev_metric, marks=marks)
            if chart is not None:
                st.plotly_chart(chart, key="runs_dev")
                st.caption(
                    "Measured during training on the selection split, carved from the training data: it chose the "
                    "kept step (dashed), so its best value is optimistic. The dev scores under Run details are "
                    "measured afterwards, on the dev split. Dotted: the majority-class baseline recorded on the dev "
                    "split."
                )

# -- config diff -------------------------------------------------------------------------------------------
st.header("Config diff")
if len(runs) < 2:
    st.info("Queue a second run to compare configs.")
else:
    a_col, b_col = st.columns(2)
    run_a = a_col.selectbox("Run A", list(by_id), index=1, format_func=ref, key="runs_diff_a", bind="query-params")
    run_b = b_col.selectbox("Run B", list(by_id), index=0, format_func=ref, key="runs_diff_b", bind="query-params")
    diff = config_diff(by_id[run_a], by_id[run_b], paths_visible=sees_server_paths(visitor, config.classroom))
    differing = int(diff["differs"].sum())
    only = st.toggle("Only the differences", key="runs_diff_only", bind="query-params")
    st.caption(f"{differing} of {len(diff)} settings differ (highlighted).")
    st.dataframe(
        highlight_differences(diff[diff["differs"]] if only else diff),
        hide_index=True,
        # the setting stays in view while a narrow screen scrolls the two runs' values sideways
        column_config={
            "key": st.column_config.TextColumn("setting", pinned=True),
            "A": label(run_a),
            "B": label(run_b),
            "differs": None,
        },
        key="runs_diff",
    )

# -- one run in detail -------------------------------------------------------------------------------------
st.header("Run details")
run_id = st.selectbox(
    "Run",
    list(by_id),
    index=requested_index(runs, st.query_params.get(RUN_PARAM)),
    format_func=label,
    key="runs_detail",
    on_change=lambda: st.query_params.update({RUN_PARAM: str(st.session_state["runs_detail"])}),
)
run = by_id[run_id]
task = run_task(run)
st.caption(f"{md(run.kind)}{f' · task {md(task)}' if task else ''} · status {md(run.status)}")

if run.status == FAILED:
    st.error(error_first_line(run) or "the run failed without an error message")
    if run.error and "\n" in run.error.strip():
        with st.expander("Full error (for debugging)"):
            st.code(run.error, language=None)
elif run.status == CANCELLED:
    st.info("This run was cancelled before it finished: it has no results.")
elif run.status != FINISHED:
    st.info(
        f"This run is {run.status}; its results appear here once it has finished (watch it live on the Train page)."
    )

link = comparison_link(run)
if link is not None:
    st.info(f"This comparison's table and charts are on the [Compare methods]({link}) page.")

result = run_result(run)
if result is not None:
    tiles = score_tiles(result)
    for column, tile in zip(st.columns(len(tiles)), tiles):
        column.metric(
            f"dev {md(metric_label(tile.metric))}",
            tile.value,
            delta=tile.delta,
            delta_color="normal" if tile.ranked else "off",
            delta_arrow="auto" if tile.ranked else "off",
        )
    for line in Reported.from_result(result).lines(result.task):
        st.caption(md(line))

matrix = confusion(run)
stats = fusion_stats(run)
if matrix is not None or stats is not None:
    confusion_col, stats_col = st.columns(2)
    if matrix is not None:
        chart = confusion_chart(*matrix, f"Dev confusion matrix of {run.name}")
        if chart is not None:
            confusion_col.plotly_chart(chart, key="runs_confusion")
    if stats is not None:
        with stats_col:
            group = st.selectbox("Dev examples", [ALL_EXAMPLES, *stats.classes], key="runs_stats_class")
            chosen = None if group == ALL_EXAMPLES else group
            title = "Mean fusion weight on the dev set" + (f", gold class {chosen}" if chosen else "")
            chart = fusion_heatmap(stats.frame(chosen), title)
            if chart is None:
                st.info("This fusion recorded no weights.")
            else:
                st.plotly_chart(chart, key="runs_stats")

snapshots = snapshots_by_step(store, run.id)
chart = trajectory_chart(weight_trajectory(snapshots), f"How {run.name}'s fusion weights moved while it trained")
if chart is not None:
    trajectory_col, replay_col = st.columns(2)
    trajectory_col.plotly_chart(chart, key="runs_trajectory")
    with replay_col:
        step = st.select_slider("Replay: weights at step", list(snapshots), value=max(snapshots), key="runs_replay")
        payload = snapshots[step].payload
        bars = fusion_weight_bars(
            weights_frame(payload["layers"], payload["adapter_names"]), f"Fusion weights at step {step}"
        )
        if bars is not None:
            st.plotly_chart(bars, key="runs_replay_bars")

problem = checkpoint_problem(run)
if problem:
    st.error(f"Cannot download this run: {md(problem)}.")
else:
    st.download_button(
        "Download run (zip: run.json + the checkpoint and every adapter it needs, loadable on its own)"
        if checkpoint_path(run) is not None
        else "Download run (zip: run.json)",
        data=lambda: artifact_zip(store, run),
        file_name=f"{archive_name(run)}.zip",
        mime="application/zip",
        on_click="ignore",
        key="runs_download",
    )

# -- adapter usage across fusions ------------------------------------------------------------------------------
adapter_usage_section(workspace)
sweeps_section(workspace)
