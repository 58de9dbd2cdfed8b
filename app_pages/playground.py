"""Playground: one input through the target task's own adapter and through the fusion, side by side."""

import streamlit as st

from fusionlab.dashboard import charts, urlstate
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.markdown import md
from fusionlab.dashboard.widgets import choose_fusion

st.title("Playground")
st.markdown(
    "Type an input for the fusion's target task. The **single-task adapter** is the target task's own adapter "
    "alone; the **fusion** mixes every adapter you leave switched on (the weights are renormalised over them)."
)

workspace, fusion, predictor = choose_fusion()
info = predictor.info
st.caption(
    f"{md(info.method.capitalize())} fusion for **{md(info.target)}** ({md(info.task.description or 'custom task')}) "
    f"over {md(', '.join(info.adapters))}; inputs are cut to {info.max_length} tokens."
)

examples = examples_for(info.task.name)
if examples:
    urlstate.set_default(urlstate.TEXT, examples[0].text)
    urlstate.set_default(urlstate.PAIR, examples[0].pair or "")
    st.write("Examples:")
    for column, (i, example) in zip(st.columns(len(examples)), enumerate(examples)):
        column.button(
            example.label, key=f"example_{i}", on_click=urlstate.use_example, args=(example,), width="stretch"
        )

fields = info.field_labels
text = st.text_area(fields[0], max_chars=urlstate.TEXT_MAX_CHARS, **urlstate.bound(urlstate.TEXT))
pair = None
if info.task.is_pair:
    pair = st.text_area(fields[1], max_chars=urlstate.TEXT_MAX_CHARS, **urlstate.bound(urlstate.PAIR))

st.write("Adapters in the fusion (switch one off to see what the fusion does without it):")
active = [
    name
    for column, name in zip(st.columns(len(info.adapters)), info.adapters)
    if column.toggle(md(name), value=True, key=f"adapter_on_{fusion}_{name}")
]

try:
    comparison = predictor.compare(text, pair, active)
except DashboardError as err:
    st.error(md(err))
    st.stop()

if comparison.truncated:
    st.warning(
        f"The input has {comparison.original_tokens} tokens; only the first {comparison.kept_tokens} "
        "(the fusion's max_length) were used."
    )
left, right = st.columns(2)
if comparison.single is not None:
    left.metric(
        f"{md(info.target)} adapter alone",
        md(comparison.single.label),
        f"{comparison.single.confidence:.0%} confident",
        delta_color="off",
        delta_arrow="off",
    )
else:
    left.info(f"The target task {md(info.target)} has no adapter of its own in this fusion.")
right.metric(
    f"Fusion over {len(comparison.active_adapters)} adapter{'s' if len(comparison.active_adapters) > 1 else ''}",
    md(comparison.fused.label),
    f"{comparison.fused.confidence:.0%} confident",
    delta_color="off",
    delta_arrow="off",
)
st.plotly_chart(charts.probability_chart(comparison))

zoom = st.toggle(
    "Zoom the colours to the weights shown",
    value=False,
    help="Weights are probabilities (0–1), shown on that scale by default. A briefly trained fusion stays close "
    "to the even share 1/N; zooming stretches the colours to the range shown so its small preferences become "
    "visible. The colour bar then says 'zoomed' and gives the range; hover a cell for its distance from 1/N.",
)
tab_layers, tab_tokens, tab_learned = st.tabs(["Layers × adapters", "Tokens × adapters", "Learned weights"])
with tab_layers:
    figure = charts.layer_adapter_heatmap(
        comparison.layer_weights,
        comparison.active_adapters,
        "Mean fusion weight per layer and adapter (over the tokens of this input)",
        zoom=zoom,
    )
    st.plotly_chart(figure)
with tab_tokens:
    layer_options = [None, *range(info.num_layers)]
    layer = st.select_slider(
        "Layer",
        options=layer_options,
        format_func=lambda i: "mean over layers" if i is None else f"layer {i + 1}",
    )
    where = "averaged over layers" if layer is None else f"in layer {layer + 1}"
    figure = charts.token_adapter_heatmap(
        comparison.tokens,
        comparison.weights_at(layer),
        comparison.active_adapters,
        f"Fusion weight of each adapter for every token, {where}",
        zoom=zoom,
    )
    st.plotly_chart(figure)
with tab_learned:
    figure = charts.learned_weights_chart(comparison.learned_weights, comparison.active_adapters)
    if figure is None:
        st.info(
            f"{info.method.capitalize()} fusion has no per-layer learned weights: its weights depend on each "
            "token (see the other tabs). Weighted fusion learns one weight per adapter and layer."
        )
    else:
        st.plotly_chart(figure)
