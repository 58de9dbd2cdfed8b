"""Efficiency: what a fusion adds to the frozen encoder, in parameters, bytes on disk and milliseconds."""

import streamlit as st

from fusionlab.dashboard import charts, efficiency
from fusionlab.dashboard.widgets import cached_latency, choose_fusion

LATENCY_KEY = "latency_requested"

st.title("Efficiency")
st.markdown(
    "The encoder stays frozen and is shared by every task; each task adds an adapter and a head, and fusion adds "
    "one small layer per transformer layer. These numbers come from the real checkpoints of this workspace."
)

workspace, fusion, predictor = choose_fusion()

report = efficiency.parameter_report(predictor)
cols = st.columns(4)
cols[0].metric("Total parameters", f"{report.total / 1e6:.2f} M")
cols[1].metric("Added to the encoder", f"{report.added / 1e6:.3f} M", help="adapters + fusion + task heads")
cols[2].metric(
    "Trained by fusion", f"{report.trainable_share:.2%}", help="fusion layers + target head, of all parameters"
)
cols[3].metric(
    "Fewer than full fine-tuning",
    f"{report.reduction_factor:.1f}×",
    help="encoder parameters / (adapter + fusion + head parameters)",
)
st.plotly_chart(charts.parameter_chart(report))

st.subheader("Size on disk")
sizes = efficiency.checkpoint_sizes(workspace, predictor)
left, right = st.columns([3, 2])
left.plotly_chart(charts.checkpoint_size_chart(sizes))
right.dataframe(
    [{"checkpoint": s.name, "kind": s.kind, "kB": s.bytes / 1024} for s in sizes],
    hide_index=True,
    column_config={"kB": st.column_config.NumberColumn(format="%.1f")},
)

st.subheader("Latency")
st.markdown(
    "Median time of one forward pass (batch of one short input, after warm-up) of the encoder alone, the target "
    "adapter alone, and fusion over the first 1, 2, … adapters. Measured on this server when you ask for it."
)
repeats = st.slider("Timed runs per configuration", 1, 50, efficiency.DEFAULT_REPEATS)
if st.button("Measure latency", icon=":material/timer:"):
    st.session_state[LATENCY_KEY] = (fusion, repeats)
if st.session_state.get(LATENCY_KEY) == (fusion, repeats):
    latency = cached_latency(workspace, fusion, repeats)
    st.plotly_chart(charts.latency_chart(latency))
    st.caption(
        f"Input: “{latency.text}” ({latency.tokens} tokens), {latency.threads} CPU threads. Other work on this "
        "machine (a training run, other sessions) slows every configuration alike."
    )
