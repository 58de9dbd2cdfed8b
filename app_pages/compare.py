"""Compare methods: fusion against merging, a gradient-free search and the single adapter, on the same adapters."""

import streamlit as st

from fusionlab.dashboard import compare_charts, compare_view, urlstate
from fusionlab.dashboard.compare_view import CompareOptions
from fusionlab.dashboard.errors import in_user_words
from fusionlab.dashboard.markdown import code, md
from fusionlab.dashboard.train_view import describe_task, ensure_worker, task_names
from fusionlab.dashboard.visitors import can_manage
from fusionlab.dashboard.widgets import current_visitor, open_run_store, server_config, settings_or_stop

st.title("Compare methods")
st.markdown(
    "Adapter Fusion is one way to combine task adapters. Merging them into one adapter costs nothing at inference; "
    "a gradient-free search picks one coefficient per adapter; AdapterDrop and pruning make a fusion cheaper. "
    "Each comparison here trained every method over the **same frozen adapters** with the **same budget** and "
    "scored it on the **same dev examples**."
)

settings = settings_or_stop()
workspace = settings.workspace
saved = compare_view.saved_comparisons(workspace)


def start_form() -> None:
    """Queue a comparison for the worker, as `fusionlab compare` does (the Runs page follows and cancels it)."""
    visitor, config = current_visitor(), server_config()
    if not can_manage(visitor, config.classroom):
        st.caption("On this shared server the teacher starts comparisons (each one trains for minutes).")
        return
    adapters = workspace.list_adapters()
    left, right = st.columns(2)
    target = left.selectbox("Target task", task_names(), format_func=describe_task, key="cmp_target")
    chosen = right.multiselect(
        "Adapters (the target's own first)", adapters, key="cmp_adapters", placeholder="Choose two or more"
    )
    chosen_methods = left.multiselect(
        "Methods", compare_view.method_names(), key="cmp_methods", placeholder="All of them"
    )
    steps = right.number_input(
        "Training steps of every trained method", 1, compare_view.MAX_COMPARE_STEPS, 30, step=10, key="cmp_steps"
    )
    seed = left.number_input("Seed", 0, 2**31 - 1, 42, key="cmp_seed")
    if any(s.slug == f"{target}-s{seed}" for s in saved):
        right.caption(f"Replaces the saved comparison {code(f'{target}-s{seed}')} when it ends.")
    if st.button("Queue comparison", type="primary", key="cmp_queue"):
        try:
            options = CompareOptions(
                target=target, adapters=chosen, methods=chosen_methods, max_steps=int(steps), seed=int(seed)
            )
            run_id = compare_view.queue_comparison(
                open_run_store(workspace), workspace, options, settings.data_dir_str, visitor.owner_id, visitor.name
            )
        except ValueError as err:
            st.error(md(in_user_words(err)))
        else:
            ensure_worker(workspace)
            st.success(f"Queued comparison run #{run_id}: follow it on the Runs page; it appears here when it ends.")


with st.expander("Start a comparison", expanded=not saved):
    start_form()
if not saved:
    st.info(
        "This workspace has no comparison yet: start one above, or from a terminal on the server, e.g. "
        f"{code('fusionlab compare cb --adapters cb,mnli,rte --max-steps 30')} (about 6 minutes on 2 CPU cores; "
        "more steps for numbers worth comparing)."
    )
    st.stop()

slugs = [s.slug for s in saved]
readable = [s.slug for s in saved if s.comparison is not None]
asked = urlstate.unknown_choice(urlstate.COMPARISON, slugs)
if st.query_params.get(urlstate.COMPARISON) not in slugs:  # no link to one: the newest that can be read
    urlstate.set_default(urlstate.COMPARISON, readable[0] if readable else slugs[0])
slug = st.selectbox("Comparison", slugs, **urlstate.bound(urlstate.COMPARISON))
if asked is not None:
    st.warning(
        f"The link asked for comparison {code(asked)}, which this workspace does not have; showing {code(slug)}."
    )
chosen = next(s for s in saved if s.slug == slug)
if chosen.comparison is None:
    st.error(md(chosen.error))
    st.stop()
comparison = chosen.comparison
if not comparison.results:
    st.info(f"Comparison {code(slug)} scored no method (each was skipped); rerun it with adapters that apply.")
    st.stop()
st.caption(md(compare_view.describe(comparison)))

mismatches = compare_view.fresh_mismatches(comparison)
if mismatches:
    st.warning(
        f"The fresh evaluation of {md(', '.join(mismatches))} differs from the training loop's last score: "
        "the saved checkpoint is not what was trained. Rerun the comparison."
    )

score_column = comparison.score_label
st.caption(compare_view.order_note(comparison))
st.dataframe(
    compare_view.display_rows(comparison),
    hide_index=True,
    column_config={
        "method": st.column_config.TextColumn(pinned=True),  # in view while a narrow screen scrolls the numbers
        score_column: st.column_config.NumberColumn(format="%.3f"),
        "95 % interval": st.column_config.TextColumn(help="bootstrap over the same dev examples (–: not recorded)"),
        "vs adapter alone": st.column_config.NumberColumn(format="%+.3f", help="minus the target adapter's score"),
        "paired 95 %": st.column_config.TextColumn(help="bootstrap interval of that difference on the same examples"),
        "paired verdict": st.column_config.TextColumn(help="'within noise' when the paired interval includes 0"),
        "latency vs encoder": st.column_config.NumberColumn(format="%.2f×"),
        "params at inference": st.column_config.NumberColumn(format="localized", help="beyond the frozen encoder"),
        "trained params": st.column_config.NumberColumn(
            format="localized", help="trained for the target in this comparison (the adapters were trained before)"
        ),
        "training": st.column_config.TextColumn(help="wall-clock, on the machine it ran on; – : it trained nothing"),
    },
)

left, right = st.container(key="compare_charts").columns(2)  # stacked on a narrow screen (app.py)
left.plotly_chart(compare_charts.accuracy_latency_chart(comparison))
figure = compare_charts.accuracy_parameters_chart(comparison)
if figure is not None:
    right.plotly_chart(figure)

figure = compare_charts.cut_down_chart(comparison)
if figure is None:
    st.info("This comparison did not measure the AdapterDrop and pruning curves (it ran without the attention fusion).")
else:
    st.plotly_chart(figure)
    st.caption(compare_view.cut_down_caption(comparison))
    with st.expander("Every point against the full fusion (paired)", icon=":material/table_rows:"):
        st.dataframe(
            compare_view.cut_down_rows(comparison),
            hide_index=True,
            column_config={
                score_column: st.column_config.NumberColumn(format="%.3f"),
                "latency vs encoder": st.column_config.NumberColumn(format="%.2f×"),
            },
        )

query = compare_view.playground_query(slug, comparison)
if query is not None:
    st.markdown(
        f"Every model of this comparison answers your own inputs in the [Playground](playground?{query}): its "
        'fusions are in the Fusion list, its merged adapters under "Compare side by side with".'
    )

details = compare_view.method_details(comparison)
if details:
    with st.expander("What each method chose (merge options, the search's coefficients)"):
        st.dataframe(details, hide_index=True)
