"""Train: queue adapter and fusion runs, and watch the queue and the running run live.

Everything shown comes from the run store, so a reload or a second tab shows the same queue; the logic lives in
:mod:`fusionlab.dashboard.train_view`.
"""

from __future__ import annotations

import streamlit as st

from fusionlab.dashboard.errors import DashboardError, in_user_words
from fusionlab.dashboard.markdown import code, md
from fusionlab.dashboard.run_charts import curves_chart, fusion_weight_bars
from fusionlab.dashboard.runs_view import (
    curve_marks,
    dev_metric_for,
    error_first_line,
    result_line,
    run_curve,
    run_label,
    weights_frame,
)
from fusionlab.dashboard.train_view import (
    ADAPTER_LIMITS,
    CANCELLED,
    DEFAULT_ADAPTER_SIZE,
    FAILED,
    FUSION_LIMITS,
    NON_LINEARITIES,
    TRAIN_ADAPTER,
    TRAIN_FUSION,
    Limits,
    QueueView,
    Requester,
    available_adapters,
    default_target,
    describe_task,
    ensure_worker,
    fusion_class,
    fusion_methods,
    fusion_name,
    fusion_run_config,
    pending_adapter_names,
    queue_adapter_runs,
    queue_fusion_run,
    task_names,
)
from fusionlab.dashboard.visitors import can_cancel, owner_label, queue_limit
from fusionlab.dashboard.widgets import current_visitor, open_run_store, server_config, session_settings

# Head counts that divide the hidden size of every bundled or common encoder (384, 768, 1024).
HEAD_CHOICES = (1, 2, 4, 6, 8, 12)


def limits_inputs(prefix: str, defaults: Limits) -> dict:
    """The shared limit fields, as :meth:`Limits.from_form` takes them (0 in an optional field means "no limit"
    or "only at the end"); built into a :class:`Limits` where the click is handled, so that a bad value is shown
    as an error instead of breaking the page."""
    box = st.expander(
        f"Budget: {defaults.steps} steps on up to {defaults.max_train_samples or 'all'} examples (the classroom "
        "profile); open to change it"
    )
    left, middle, right = box.columns(3)
    max_steps = left.number_input("Max steps", value=defaults.steps, step=10, key=f"{prefix}_max_steps")
    batch_size = left.number_input("Batch size", value=defaults.batch_size, step=4, key=f"{prefix}_batch_size")
    learning_rate = left.number_input(
        "Learning rate", value=defaults.learning_rate, step=1e-4, format="%.5f", key=f"{prefix}_learning_rate"
    )
    max_train = middle.number_input(
        "Max train samples (0 = all)", value=defaults.max_train_samples or 0, step=100, key=f"{prefix}_max_train"
    )
    max_eval = middle.number_input(
        "Max dev samples (0 = all)", value=defaults.max_eval_samples or 0, step=50, key=f"{prefix}_max_eval"
    )
    max_length = middle.number_input(
        "Max length (tokens)", value=defaults.max_length, step=16, key=f"{prefix}_max_length"
    )
    eval_steps = right.number_input(
        "Evaluate every N steps (0 = at the end)", value=defaults.eval_steps or 0, step=10, key=f"{prefix}_eval"
    )
    snapshot_steps = 0
    if defaults.snapshot_steps is not None:
        snapshot_steps = right.number_input(
            "Record fusion weights every N steps (0 = at the end)",
            value=defaults.snapshot_steps,
            step=5,
            key=f"{prefix}_snapshots",
        )
    return dict(
        max_steps=max_steps,
        max_train_samples=max_train,
        max_eval_samples=max_eval,
        max_length=max_length,
        batch_size=batch_size,
        learning_rate=learning_rate,
        eval_steps=eval_steps,
        snapshot_steps=snapshot_steps,
    )


def cancel(run_store, run_id: int, who, classroom: bool) -> None:
    """Cancel a run if this visitor may (checked again here: the button may be stale). Everything it needs
    comes in its arguments, bound when the button was drawn for this session, never from module globals."""
    if can_cancel(who, run_store.get(run_id), classroom):
        run_store.request_cancel(run_id)


def propose_target() -> None:
    st.session_state["fusion_target"] = default_target(st.session_state["fusion_adapters"])


st.title("Train")
try:
    settings = session_settings()
except DashboardError as err:
    st.error(md(err))
    st.stop()
store = open_run_store(settings.workspace)
workspace = settings.workspace
config = server_config()
visitor = current_visitor()
requester = Requester(
    visitor.owner_id,
    visitor.name,
    queue_limit(visitor, config.classroom, config.max_queued_per_visitor),
    guarded=config.classroom and not visitor.teacher,  # a student: own names, nobody else's work replaced
)

st.caption(
    "Queue adapter and fusion runs. A background worker executes them one at a time, in queue order, so a fusion "
    "queued after the adapters it needs starts once they are trained."
)

# Keyed and tracked, so the open tab survives every rerun (a changed field, an error shown in the tab) and a link.
adapter_tab, fusion_tab = st.tabs(
    ["Adapter runs", "Fusion run"], key="train_tab", on_change="rerun", bind="query-params"
)

with adapter_tab:
    tasks = st.multiselect(
        "Tasks", task_names(), format_func=describe_task, key="train_tasks", placeholder="Choose one or more tasks"
    )
    sizes: dict[str, int] = {}
    if tasks:
        st.markdown("**Adapter size** (bottleneck width) per task")
        columns = st.columns(min(len(tasks), 4))
        for i, task in enumerate(tasks):
            sizes[task] = columns[i % len(columns)].number_input(
                task, value=DEFAULT_ADAPTER_SIZE, step=8, key=f"train_adapter_size_{task}"
            )
    planned = {task: requester.default_name(workspace, task) for task in tasks}
    renamed = {task: name for task, name in planned.items() if name != task}
    if renamed:
        st.caption(
            "Saved as: "
            + ", ".join(f"{md(task)} → {md(name)}" for task, name in renamed.items())
            + (" (your own names on this shared server)" if requester.guarded else " (beside the pack's read-only one)")
        )
    refused = False  # a refused name is said once, here, and the button waits until the tasks chosen change
    for name in planned.values():
        note = requester.name_note(store, workspace, TRAIN_ADAPTER, name, name)
        if note is not None and note[0]:
            st.error(md(note[1]))
            refused = True
    retrained = sorted(set(planned.values()) & set(workspace.list_adapters()))
    if retrained:
        st.caption(
            "Already trained; the new run makes a new version (fusions keep the version they were trained on): "
            + ", ".join(md(name) for name in retrained)
        )
    non_linearity = st.selectbox(
        "Non-linearity",
        NON_LINEARITIES,
        key="train_non_linearity",
        help="Only adapters with the same non-linearity can be fused (the demo's adapters use relu).",
    )
    st.caption(
        "Budget: the **classroom profile**, a short run that ends while you watch. "
        "`fusionlab train-adapter TASK --profile classroom` queues exactly this run; without `--profile` the "
        "command line trains the pretrained pack's longer recipe."
    )
    adapter_limits = limits_inputs("adapter", ADAPTER_LIMITS)
    if st.button("Queue adapter runs", type="primary", key="queue_adapters", disabled=refused):
        try:
            ids = queue_adapter_runs(
                store,
                tasks,
                sizes,
                non_linearity,
                Limits.from_form(**adapter_limits),
                settings.data_dir_str,
                workspace,
                requester,
            )
        except ValueError as err:
            st.error(md(in_user_words(err)))
        else:
            ensure_worker(workspace)
            st.success(f"Queued {len(ids)} adapter run(s): " + ", ".join(f"#{i}" for i in ids))

with fusion_tab:
    if "fusion_target" not in st.session_state:
        st.session_state["fusion_target"] = default_target([])
    pending = pending_adapter_names(store)
    adapters = st.multiselect(
        "Adapters to fuse",
        available_adapters(workspace, store),
        key="fusion_adapters",
        accept_new_options=True,
        placeholder="Choose the adapters (by convention the target task's own adapter first)",
        help="Trained adapters and those still queued or running. Typing another name is allowed, but the fusion "
        "is only queued once that adapter is trained or queued.",
        on_change=propose_target,
    )
    target = st.selectbox(
        "Target task",
        task_names(),
        format_func=describe_task,
        key="fusion_target",
        help="The task the fused model is trained and evaluated on. Choosing adapters proposes the first one's task.",
    )
    if pending:
        st.caption("Queued or running, not yet trained: " + ", ".join(pending))
    left, middle, right = st.columns(3)
    method = left.selectbox("Fusion method", fusion_methods(), key="fusion_method")
    facts = fusion_class(method)  # what the method is decides which options apply, never its name
    heads = middle.selectbox(
        "Attention heads", HEAD_CHOICES, key="fusion_heads", disabled=not facts.has_heads, help="attention only"
    )
    temperature = right.number_input(
        "Softmax temperature", value=1.0, step=0.1, key="fusion_temperature", disabled=not facts.uses_temperature
    )
    value_regularization = left.number_input(
        "Value regularisation (‖I − V‖² weight)",
        value=0.0,
        step=0.01,
        format="%.3f",
        key="fusion_value_reg",
        disabled=not facts.has_value_projection,
        help="methods with a value projection (attention)",
    )
    default_name = requester.default_name(workspace, fusion_name(target, method), "fusion")
    name = middle.text_input("Fusion name", key="fusion_name", placeholder=default_name, help="empty: the default")
    planned_name = name.strip() or default_name  # what the hint, the note and the queued run all use
    note = requester.name_note(store, workspace, TRAIN_FUSION, planned_name, default_name)
    if note is not None:
        (st.error if note[0] else st.caption)(md(note[1]))
    fusion_limits = limits_inputs("fusion", FUSION_LIMITS)
    refused = note is not None and note[0]  # said once, under the box; the button waits until it is changed
    if st.button("Queue fusion run", type="primary", key="queue_fusion", disabled=refused):
        try:
            run = fusion_run_config(
                target,
                adapters,
                method=method,
                heads=heads,
                temperature=temperature,
                value_regularization=value_regularization,
                limits=Limits.from_form(**fusion_limits),
                data_dir=settings.data_dir_str,
                name=planned_name,
            )
            run_id = queue_fusion_run(store, workspace, run, requester)
        except ValueError as err:
            st.error(md(in_user_words(err)))
        else:
            ensure_worker(workspace)
            st.success(f"Queued fusion run #{run_id}")


@st.fragment(run_every=2)
def live_section() -> None:
    """Redrawn every two seconds from the store: the queue, the running run, and the last run that ended."""
    view = QueueView.load(store, workspace)
    st.header("Queue")
    if view.stalled():
        st.warning(
            f"{len(view.queued)} run(s) have been waiting for a while and nothing is training them (the background "
            "trainer stopped)."
        )
        if st.button("Start training them", key="start_worker"):
            ensure_worker(workspace)
    if not view.queued:
        st.caption("Nothing queued.")
    for item in view.queued:
        text, button = st.columns([6, 1], vertical_alignment="center")
        who = owner_label(item.run, visitor) if config.classroom else ""
        text.markdown(
            f"**{item.position}.** {code(item.run.kind)} {md(run_label(item.run))}" + (f" · {md(who)}" if who else "")
        )
        button.button(
            "Cancel",
            key=f"cancel_{item.run.id}",
            on_click=cancel,
            args=(store, item.run.id, visitor, config.classroom),
            disabled=not can_cancel(visitor, item.run, config.classroom),
        )

    st.header("Running")
    run = view.active
    if run is None:
        st.caption("No run is executing.")
    else:
        progress, message = view.progress
        title, button = st.columns([6, 1], vertical_alignment="center")
        title.subheader(md(run_label(run)))
        button.button(
            "Cancel",
            key=f"cancel_{run.id}",
            on_click=cancel,
            args=(store, run.id, visitor, config.classroom),
            disabled=run.cancel_requested or not can_cancel(visitor, run, config.classroom),
        )
        st.progress(progress, text=message)
        st.caption(view.timing())
        loss_column, dev_column = st.columns(2)
        with loss_column:
            marks = [curve_marks(run)]  # chance level (ln of the label count) and, once ended, the kept step
            chart = curves_chart(run_curve(run, view.metrics, "loss"), "loss", "Training loss", marks)
            if chart is None:
                st.info("The loss appears after the first logged steps.")
            else:
                st.plotly_chart(chart, key="live_loss")
        with dev_column:
            dev_metric = dev_metric_for(run, view.metrics)
            chart = curves_chart(run_curve(run, view.metrics, dev_metric), dev_metric, marks=marks)
            if chart is None:
                st.info(
                    "The score on the selection split (carved from the training data; it chooses the kept step) "
                    "appears after the first evaluation."
                )
            else:
                st.plotly_chart(chart, key="live_dev")
        if run.kind == TRAIN_FUSION:
            snapshot = view.latest_snapshot
            if snapshot is None:
                st.info("The fusion weights appear with the first snapshot.")
            else:
                if len(view.snapshots) > 1 and not st.toggle(
                    "Follow the latest weights", value=True, key="live_follow"
                ):
                    by_step = {snap.step: snap for snap in view.snapshots}
                    steps = list(by_step)
                    step = st.select_slider("Replay: weights at step", steps, value=steps[-1], key="live_step")
                    snapshot = by_step[step]
                weights = weights_frame(snapshot.payload["layers"], snapshot.payload["adapter_names"])
                chart = fusion_weight_bars(weights, f"Fusion weights per layer at step {snapshot.step}")
                if chart is None:
                    st.info("This snapshot holds no weights.")
                else:
                    st.plotly_chart(chart, key="live_weights")

    ended = view.last_ended
    if ended is not None:
        st.header("Last ended")
        if ended.status == FAILED:
            st.error(f"{md(run_label(ended))}: {md(error_first_line(ended))}")
        elif ended.status == CANCELLED:
            st.info(f"{md(run_label(ended))} was cancelled.")
        else:
            line = result_line(ended)
            st.success(f"{md(run_label(ended))}: dev {md(line)}" if line is not None else md(run_label(ended)))
        st.caption("Its curves, confusion matrix and artifacts are on the Runs page.")


live_section()
