"""Home: what adapter fusion is, what this workspace holds, and the one-click classroom demo."""

from pathlib import Path

import streamlit as st

from fusionlab.dashboard import curve_view, workspace_view
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.markdown import code, md
from fusionlab.dashboard.visitors import can_manage, sees_server_paths, shown_path
from fusionlab.dashboard.widgets import current_visitor, server_config, settings_or_stop

DIAGRAM = Path(__file__).resolve().parents[1] / "assets" / "adapter_fusion.svg"
NUMBER = st.column_config.NumberColumn(format="%.3f")

st.title("fusionlab: adapter fusion, seen from inside")
st.markdown(
    "Train one small **adapter** per task on a frozen encoder, then learn a **fusion** layer that decides, "
    "in every layer and for every token, how much of each adapter to use for a target task "
    "([Pfeiffer et al., 2021](https://arxiv.org/abs/2005.00247)). Try a trained fusion on the **Playground**, "
    "see what it costs on **Efficiency**, and take the fusion layer apart on **Mechanics**."
)
st.image(str(DIAGRAM), caption="One transformer layer with adapter fusion: the same in every layer.")

settings = settings_or_stop()
workspace = settings.workspace
summary = workspace_view.summarize_workspace(workspace)

st.header("This workspace")
st.markdown(
    f"{code(shown_path(summary.root, sees_server_paths(current_visitor(), server_config().classroom)))}  \n**Base model** (frozen): {code(summary.base_model)}  \n**Models run on**: {md(summary.device)}"
)
cols = st.columns(4)
cols[0].metric("Adapters", len(summary.adapters))
cols[1].metric("Fusions", len(summary.fusions))


@st.fragment(run_every="5s")
def run_status() -> None:
    """The run in progress, refreshed every few seconds; the whole page reruns when the checkpoints change."""
    active, queued = workspace_view.run_status(workspace)
    if active is not None:
        st.progress(
            active.progress,
            text=f"Running: {md(active.kind)} **{md(active.name)}** ({md(active.message or 'starting')})",
        )
    if queued:
        st.caption(f"{queued} run{'s' if queued > 1 else ''} queued.")
    if active is None and not queued:
        st.caption("No run in progress.")
    if workspace_view.checkpoint_names(workspace) != (
        tuple(r.name for r in summary.adapters),
        tuple(r.name for r in summary.fusions),
    ):
        st.rerun()


run_status()

st.subheader("Adapters")
if summary.adapters:
    st.dataframe(
        [row.as_dict() for row in summary.adapters],
        hide_index=True,
        column_config={"score": NUMBER, "majority baseline": NUMBER},
    )
    st.caption(
        "*score*: the saved weights on the dev split (the pack's: all of it), with its 95 % interval and example "
        "count. *beyond "
        "majority?*: whether that whole interval lies above the *majority baseline* (always answering the most "
        "frequent dev label); where it does not, the adapter did not learn, and a fusion's gain over it is no "
        "transfer."
    )
else:
    st.info("No adapter yet: prepare the demo below, or train one on the Train page.")
st.subheader("Fusions")
if summary.fusions:
    st.dataframe(
        [row.as_dict() for row in summary.fusions],
        hide_index=True,
        column_config={"score": NUMBER, "majority baseline": NUMBER},
    )
    st.caption(
        "*its adapter alone*: the fusion's target task's own adapter, scored on the same dev examples as the "
        "fusion. *fusion − adapter*: the difference with its paired 95 % interval (both models on the same "
        "resampled examples); where the interval includes 0 it is *within noise*, not a win or a loss. "
        "*step chosen on*: which examples chose the kept training step — examples carved from the training "
        "data, never the dev examples it is scored on; artifacts saved before that rule say *dev itself "
        "(optimistic)*."
    )
else:
    st.info("No fusion yet: prepare the demo below, or train one on the Train page.")

curves = curve_view.saved_curves(workspace)
if curves:
    st.subheader("Does fusion help when the target has little data?")
    for saved in curves:
        if saved.curve is None:
            st.error(md(saved.error))
            continue
        chart = curve_view.curve_chart(saved.curve)
        if chart is not None:
            st.plotly_chart(chart, key=f"curve_{saved.source}_{saved.name}")
        st.caption(md(curve_view.describe(saved.curve)))

st.subheader("Classroom demo")
st.markdown(
    "The workspace starts with the **pretrained pack**: adapters for GLUE and SuperGLUE tasks, SICK and a "
    "low-resource IMDb one, plus fusions for IMDb and RTE (marked *pack (read-only)*; their scores are on the "
    "full dev split). The demo trains two more fusions live over the pack's adapters, so you can watch their "
    f"weights form on the **Train** page: {workspace_view.demo_description()}; "
    "each fusion's score is shown beside its own adapter's alone."
)
config = server_config()
allowed = can_manage(current_visitor(), config.classroom)
if not allowed:
    st.caption("On this classroom server the teacher prepares the demo (unlock it in the sidebar with the passphrase).")
present = workspace_view.demo_present(workspace)
confirmed = True
if present and allowed:
    confirmed = st.checkbox(
        f"The demo's fusions ({', '.join(present)}) are already trained here: train them again from scratch "
        "(a few minutes; the worker's queue waits behind them)",
        key="demo_retrain",
    )
label = "Train the demo again" if present else "Prepare demo workspace"
if st.button(label, type="primary", icon=":material/rocket_launch:", disabled=not (allowed and confirmed)):
    try:
        outcome = workspace_view.prepare_demo(workspace, settings.data_dir_str)
    except DashboardError as err:
        st.warning(md(err))
    else:
        st.success(md(outcome.message))


def manage(action, *args) -> None:
    """Button callback: delete or prune before the page runs (so its tables are already without it); the
    outcome is shown on that run."""
    if not can_manage(current_visitor(), server_config().classroom):  # the buttons are not shown to others
        return
    try:
        st.session_state["manage_notice"] = ("success", action(workspace, *args))
    except DashboardError as err:
        st.session_state["manage_notice"] = ("error", str(err))


if allowed:
    with st.expander(
        "Manage this workspace (delete)", icon=":material/delete:", expanded="manage_notice" in st.session_state
    ):
        st.caption(
            "Deleting is refused for the pack's artifacts (read-only), for an adapter a fusion still fuses, and "
            "for an artifact a queued or running run is writing; the reason is shown."
        )
        if notice := st.session_state.pop("manage_notice", None):
            (st.success if notice[0] == "success" else st.error)(md(notice[1]))
        choices = workspace_view.removable(workspace)
        if choices:
            chosen = st.selectbox("Artifact", choices, format_func=lambda c: f"{c[0]} {c[1]}", key="delete_choice")
            st.button(
                "Delete", key="delete_artifact", icon=":material/delete_forever:", on_click=manage,
                args=(workspace_view.remove, *chosen),
            )  # fmt: skip
        else:
            st.caption("Nothing here can be deleted: the pack's artifacts are read-only.")
        count, megabytes = workspace_view.unused_version_count(workspace)
        label = f"Remove {count} earlier version{'s' if count != 1 else ''} nothing uses ({megabytes:.1f} MB)"
        st.button(label, key="prune_versions", disabled=not count, on_click=manage, args=(workspace_view.prune,))
