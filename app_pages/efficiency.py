"""Efficiency: what a fusion adds to the frozen encoder, in parameters, bytes on disk and milliseconds."""

import streamlit as st

from fusionlab.dashboard import charts, efficiency
from fusionlab.dashboard.markdown import md
from fusionlab.dashboard.widgets import cached_latency, choose_fusion

LATENCY_KEY = "latency_requested"

st.title("Efficiency")
st.markdown(
    "What a fusion adds to the frozen encoder, in parameters, bytes on disk and milliseconds: counted and measured "
    "on the real checkpoints of this workspace."
)

workspace, fusion, predictor = choose_fusion()

report = efficiency.parameter_report(predictor)
st.markdown(efficiency.parameter_summary(report))
cols = st.columns(4)
cols[0].metric("Total parameters", efficiency.count_text(report.total))
cols[1].metric(
    "Added to the encoder", efficiency.count_text(report.added), help="adapters + their heads + fusion + fusion head"
)
cols[2].metric(
    "Trained by fusion",
    efficiency.count_text(report.trainable),
    help=f"{efficiency.trained_parts(report)}: {report.trainable_share:.2%} of all parameters",
)
cols[3].metric(
    "Trained, vs full fine-tuning",
    f"{report.base_over_trained:.1f}× fewer",
    help="encoder parameters ÷ parameters fusion training updates; see below for everything added",
)
st.caption(efficiency.reduction_summary(report))
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
summary = efficiency.size_summary(sizes)
if summary:
    st.caption(summary)

st.subheader("Latency")
st.markdown(
    "Time of one forward pass (batch of one input of the length chosen, after warm-up) of the encoder alone, the "
    "target adapter alone, and fusion over the first 1, 2, … adapters: the median of many timed runs and their "
    "spread. Measured on this server when you ask for it."
)
lengths = efficiency.latency_lengths(predictor.info.max_length)
left, right = st.columns(2)
repeats = left.slider("Timed runs per configuration", 1, 50, efficiency.DEFAULT_REPEATS)
tokens = right.select_slider(
    "Input length (tokens)",
    lengths,
    value=efficiency.default_latency_tokens(predictor.info.max_length),
    help=f"This fusion was trained on inputs of up to {predictor.info.max_length} tokens.",
)
if st.button("Measure latency", icon=":material/timer:"):
    st.session_state[LATENCY_KEY] = (fusion, repeats, tokens)
if st.session_state.get(LATENCY_KEY) == (fusion, repeats, tokens):
    latency = cached_latency(workspace, fusion, repeats, tokens)
    st.plotly_chart(charts.latency_chart(latency))
    st.caption(md(latency.caption()))
    st.dataframe(
        latency.rows(),
        hide_index=True,
        column_config={
            name: st.column_config.NumberColumn(f"{name} (ms)", format="%.1f")
            for name in ("median", "q1", "q3", "min", "max")
        },
    )
