"""Mechanics: the fusion layer on its own, as in the notebook's section 2, with every knob exposed."""

import streamlit as st

from fusionlab.dashboard import charts, mechanics, urlstate
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.markdown import md
from fusionlab.dashboard.widgets import load_predictor, session_settings

RANDOM, REAL = "random outputs", "a real sentence"

st.title("Mechanics")
st.markdown(
    "A fusion layer turns N adapter outputs into one. **Attention fusion** scores every adapter output against "
    "a query (the hidden state the adapters read) and takes a softmax per token; **weighted fusion** learns one weight "
    "per adapter. The **temperature** divides the scores before the softmax: below 1 it sharpens the choice, "
    "above 1 it flattens it towards a plain average."
)

source = st.radio("Adapter outputs", [RANDOM, REAL], horizontal=True, **urlstate.bound(urlstate.SOURCE))
method = st.radio("Fusion method", mechanics.methods(), horizontal=True, **urlstate.bound(urlstate.METHOD))
temperature = st.slider("Temperature", 0.05, 5.0, 1.0, step=0.05, **urlstate.bound(urlstate.TEMPERATURE))

try:
    if source == RANDOM:
        cols = st.columns(3)
        num_adapters = cols[0].slider("Adapters", 2, len(mechanics.RANDOM_ADAPTER_NAMES), 3)
        seed = cols[1].number_input("Seed", min_value=0, value=0, step=1)
        heads = cols[2].selectbox("Attention heads", mechanics.HEAD_CHOICES, disabled=not mechanics.has_heads(method))
        outputs = mechanics.random_outputs(num_adapters, seed=int(seed))
    else:
        workspace = session_settings().workspace
        fusions = workspace.list_fusions()
        if not fusions:
            st.info("This workspace has no fusion yet: prepare the demo on the Home page, or use random outputs.")
            st.stop()
        asked = urlstate.unknown_choice(urlstate.FUSION, fusions)
        fusion = st.selectbox("Fusion", fusions, **urlstate.bound(urlstate.FUSION))
        if asked is not None:
            st.warning(
                f"The link asked for fusion {md(asked)}, which this workspace does not have; showing {md(fusion)}."
            )
        predictor = load_predictor(workspace, fusion)
        examples = examples_for(predictor.info.task.name)
        if examples:
            urlstate.set_default(urlstate.TEXT, examples[0].text)
            urlstate.set_default(urlstate.PAIR, examples[0].pair or "")
        fields = predictor.info.field_labels
        text = st.text_input(fields[0], max_chars=urlstate.TEXT_MAX_CHARS, **urlstate.bound(urlstate.TEXT))
        pair = None
        if predictor.info.task.is_pair:
            pair = st.text_input(fields[1], max_chars=urlstate.TEXT_MAX_CHARS, **urlstate.bound(urlstate.PAIR))
        if st.session_state.get(urlstate.LAYER, 0) > predictor.info.num_layers:  # a link, or a deeper fusion
            st.session_state[urlstate.LAYER] = predictor.info.num_layers
        urlstate.set_default(urlstate.LAYER, predictor.info.num_layers)
        layer = st.slider("Transformer layer", 1, predictor.info.num_layers, **urlstate.bound(urlstate.LAYER))
        seed, heads = 0, predictor.info.num_heads
        outputs = mechanics.real_outputs(predictor, text, pair, layer - 1)
    result = mechanics.fuse(outputs, method, temperature, num_heads=heads, seed=int(seed))
except DashboardError as err:
    st.error(md(err))
    st.stop()

st.caption(
    f"Outputs: {md(result.output_source)}. Fused by {md(result.layer_source)} ({result.num_parameters:,} parameters)."
)
left, right = st.columns(2)
left.plotly_chart(charts.mechanics_weights_chart(result))
right.plotly_chart(charts.mechanics_similarity_chart(result))
zoom = st.toggle("Zoom the colours to the weights shown", value=False, **urlstate.bound(urlstate.ZOOM))
st.plotly_chart(
    charts.token_adapter_heatmap(
        result.tokens,
        result.per_token,
        result.names,
        "Weight of each adapter for every token (mean over heads)",
        zoom=zoom,
    )
)
if result.compared == "output":
    st.subheader("Output statistics")
else:
    st.subheader("What each adapter changes")
    st.caption(
        "A real adapter's output is the hidden state plus a small change, so the outputs themselves are nearly "
        "identical (cosine ≈ 1); the statistics and similarities here are of the changes each adapter, and the "
        "fusion, make to the hidden state."
    )
st.dataframe(mechanics.stats_rows(result), hide_index=True)
st.caption(md(mechanics.fused_summary(result)))
st.caption(md(mechanics.scale_note(result)))
