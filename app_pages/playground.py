"""Playground: one input through the target task's own adapter and through the fusion, side by side."""

import math

import streamlit as st

from fusionlab.dashboard import charts, dev_browser, urlstate
from fusionlab.dashboard.dev_browser import DevExample
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.inference import (
    Comparison,
    FusionInfo,
    Prediction,
    Predictor,
    WeightOverride,
    comparable_fusions,
    own_adapter_label,
    recorded_dev_text,
)
from fusionlab.dashboard.markdown import breakable, md
from fusionlab.dashboard.widgets import (
    AdapterPredictor,
    Workspace,
    cached_dev_drops,
    cached_dev_examples,
    choose_fusion,
    composed_choices,
    load_adapter_predictor,
    load_predictor,
    session_settings,
)

st.title("Playground")
st.markdown(
    "Type an input for the fusion's target task. The **single-task adapter** is the target task's own adapter "
    "alone; the **fusion** mixes every adapter you leave switched on (the weights are renormalised over them)."
)

pick_column, compare_column = st.columns(2)  # one row: the input and both answers stay above the fold
with pick_column:
    workspace, fusion, predictor = choose_fusion()
info = predictor.info
SUBSET = "this fusion, other adapters"
# What the compare mode puts beside the fusion: a fusion (over some adapters), or a comparison's merged adapter.
second: tuple[Predictor, list[str] | None] | AdapterPredictor | None = None
composed = composed_choices(workspace, fusion, info.task.name)  # what the workspace's comparisons trained
# A comparison's own fusions are among `composed` already; the workspace's other fusions only beside one of its own.
others = comparable_fusions(workspace, fusion) if workspace.root == session_settings().workspace.root else []
compare_with = compare_column.selectbox(
    "Compare side by side with",
    [None, SUBSET, *others, *composed],
    format_func=lambda name: "(nothing)" if name is None else name,  # what it shows is what the link holds
    **urlstate.bound(urlstate.COMPARE),
)
if compare_with == SUBSET:
    subset_key = f"subset_{fusion}"
    urlstate.set_default(subset_key, list(info.adapters[:-1]))
    chosen = compare_column.multiselect("Adapters of the second view", info.adapters, **urlstate.bound(subset_key))
    second = (predictor, chosen)
elif compare_with is not None:
    try:
        model = composed.get(compare_with)
        if model is None:
            second = (load_predictor(workspace, compare_with), None)
        elif model.kind == "fusion":
            second = (load_predictor(model.workspace, model.name), None)
        else:
            second = load_adapter_predictor(model)
    except DashboardError as err:
        st.error(md(err))
st.caption(
    f"{md(info.method.capitalize())} fusion for **{md(info.target)}** ({md(info.task.description or 'custom task')}) "
    f"over {md(', '.join(info.adapters))}; inputs are cut to {info.max_length} tokens."
)
recorded = recorded_dev_text(workspace, fusion)
if recorded is not None:
    st.caption(f"Measured when it was saved, on its dev split: {md(recorded)}.")


def input_panel(fusion: str, info: FusionInfo) -> tuple[str, str | None, list[str]]:
    """Examples, the text box(es) and the adapter switches; returns the text, the pair and the adapters on."""
    examples = examples_for(info.task.name)
    if examples:
        urlstate.set_default(urlstate.TEXT, examples[0].text)
        urlstate.set_default(urlstate.PAIR, examples[0].pair or "")
        for column, (i, example) in zip(st.columns(len(examples)), enumerate(examples)):
            column.button(
                example.label, key=f"example_{i}", on_click=urlstate.use_example, args=(example,), width="stretch"
            )
    fields = info.field_labels
    height = 90 if info.task.is_pair else 130
    # max_chars makes the box count the characters against its limit (n/5000) as the user types or pastes
    text = st.text_area(fields[0], max_chars=urlstate.TEXT_MAX_CHARS, height=height, **urlstate.bound(urlstate.TEXT))
    pair = None
    if info.task.is_pair:
        pair = st.text_area(
            fields[1], max_chars=urlstate.TEXT_MAX_CHARS, height=height, **urlstate.bound(urlstate.PAIR)
        )
    st.caption("Adapters in the fusion (switch one off to see what the fusion does without it):")
    active = [
        name
        for column, name in zip(st.columns(len(info.adapters)), info.adapters)
        if column.toggle(md(name), value=True, **urlstate.bound(f"adapter_on_{fusion}_{name}"))
    ]
    return text, pair, active


def what_if_panel(fusion: str, info: FusionInfo, active: list[str]) -> WeightOverride | None:
    """What if the fusion trusted one adapter more? A slider per adapter switched on sets its fusion weight
    (in every layer or one); the others keep their learned proportions, scaled to share the rest. Kept in the
    link; "back to learned" is one click."""
    if len(active) < 2 or not st.toggle("What if: set fusion weights by hand", **urlstate.bound(f"whatif_{fusion}")):
        return None
    layers = [None, *range(info.num_layers)]
    layer_key = urlstate.weight_layer_key(fusion)
    urlstate.set_default(layer_key, "every layer")
    layer_label = st.selectbox(
        "In", ["every layer", *(f"layer {i + 1}" for i in range(info.num_layers))], **urlstate.bound(layer_key)
    )
    layer = layers[["every layer", *(f"layer {i + 1}" for i in range(info.num_layers))].index(layer_label)]
    chosen = {}
    for column, name in zip(st.columns(len(active)), active):
        key = urlstate.weight_key(fusion, name)
        urlstate.set_default(key, urlstate.LEARNED)
        value = column.select_slider(md(name), urlstate.WEIGHT_CHOICES, **urlstate.bound(key))
        if value != urlstate.LEARNED:
            chosen[name] = float(value)
    st.button("Back to learned", key=f"whatif_reset_{fusion}", on_click=urlstate.back_to_learned, args=(fusion, active))
    try:
        return WeightOverride(chosen, layer) if chosen else None
    except ValueError as err:
        st.error(md(err))
        return None


def fusion_title(comparison: Comparison) -> str:
    count = len(comparison.active_adapters)
    return f"Fusion over {count} adapter{'s' if count > 1 else ''}"


def verdict(title: str, prediction: Prediction) -> None:
    """One answer in one card: the label, large, how confident the model is, and every class's probability as a
    bar on the full 0–100 % scale. Bars rather than a chart: a browser redraws them in a few milliseconds, where a
    chart took ~50 ms of every interaction (bench/ui_latency.py)."""
    with st.container(border=True):
        confidence = f"{prediction.confidence:.0%} confident"
        st.metric(title, breakable(prediction.label), confidence, delta_color="off", delta_arrow="off")
        for label, probability in zip(prediction.labels, prediction.probabilities):
            shown = float(probability) if math.isfinite(probability) else 0.0  # a broken model's NaN: an empty bar
            st.progress(min(max(shown, 0.0), 1.0), text=f"{md(label)}: {probability:.0%}")


def compare_panel(first: Comparison, second: Comparison, zoom: bool) -> None:
    """Two views of the same input side by side — two fusions of the same task, or one fusion over two adapter
    subsets: each one's answer and its weights per layer. Kept in the link (``compare=``, ``subset_<fusion>=``)."""
    same_fusion = first.fusion is second.fusion  # one predictor (a subset), not two fusions that share a name
    for i, (column, comparison) in enumerate(zip(st.columns(2, gap="large"), (first, second))):
        info = comparison.fusion
        with column:
            what = f"over {', '.join(comparison.active_adapters)}" if same_fusion else f"({info.method})"
            st.subheader(f"{md(info.name)} {md(what)}")
            verdict(fusion_title(comparison), comparison.fused)
            title = f"{info.name}: mean fusion weight per layer and adapter"
            figure = charts.layer_adapter_heatmap(
                comparison.layer_weights, comparison.active_adapters, title, zoom=zoom
            )
            if figure is None:
                st.info(f"{md(info.method.capitalize())} fusion gives every adapter the same weight.")
            else:
                st.plotly_chart(figure, key=f"compare_{i}")


def composed_panel(first: Comparison, other: AdapterPredictor, text: str, pair: str | None) -> None:
    """The fusion beside one adapter that a comparison merged (or searched) from the same adapters."""
    composed = other.composed
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader(f"{md(first.fusion.name)} ({md(first.fusion.method)})")
        verdict(fusion_title(first), first.fused)
    with right:
        st.subheader(md(composed.method))
        verdict(f"One adapter: {md(composed.method)}", other.predict(text.strip(), (pair or "").strip() or None))
        st.caption(
            f"{md(composed.describe())} A merged adapter is one adapter with its own head: it costs what a single "
            "adapter costs and has no fusion weights to show."
        )


def verdict_panel(info: FusionInfo, comparison: Comparison, gold: str | None, override: WeightOverride | None) -> None:
    """The two answers side by side: the target's own adapter alone, then the fusion; whether they disagree, and
    the gold label when the input is a dev example loaded from the browser below."""
    if comparison.unfamiliar:
        st.warning(md(comparison.unfamiliar))
    if comparison.truncated:
        st.warning(
            f"The input has {comparison.original_tokens} tokens; only the first {comparison.kept_tokens} "
            "(the fusion's max_length) were used."
        )
    # Side by side: both cards above the fold at 1280×720, whatever the classes (app.py stacks them when narrow).
    alone, fused = st.container(key="verdicts").columns(2)
    with alone:
        if comparison.single is not None:
            verdict(f"{md(own_adapter_label(info))} adapter alone", comparison.single)
        else:
            st.info(f"The target task {md(info.target)} has no adapter of its own in this fusion.")
    with fused:
        verdict(fusion_title(comparison), comparison.fused)
    if override is not None:
        where = "every layer" if override.layer is None else f"layer {override.layer + 1}"
        shown = ", ".join(f"{name} {value:.2f}" for name, value in override.weights.items())
        st.caption(
            f"The fusion's weights are set by hand in {where}: {md(shown)}; the other adapters share the rest "
            "in their learned proportions."
        )
    if len(comparison.active_adapters) == 1:
        st.info(
            f"With one adapter switched on, every fusion weight is 1, yet the fusion need not agree with "
            f"{md(comparison.active_adapters[0])} alone: the fusion passes the adapter's output through its own "
            "trained layers (attention fusion's value projection) and classifies with its own head, trained on the "
            "mix of all its adapters. The difference is that head and projection, not a choice among adapters."
        )
    if comparison.single is not None and comparison.single.label != comparison.fused.label:
        st.info(
            f"They disagree: the adapter alone says {md(comparison.single.label)}, the fusion "
            f"{md(comparison.fused.label)}. The weights below show which adapters the fusion leaned on."
        )
    if gold is not None:
        right = [
            who for who, p in (("adapter", comparison.single), ("fusion", comparison.fused)) if p and p.label == gold
        ]
        st.caption(
            f"Gold label of this dev example: **{md(gold)}** — "
            + (f"{' and '.join(right)} right." if right else "both wrong.")
        )


@st.fragment
def explore(
    workspace: Workspace,
    fusion: str,
    predictor: Predictor,
    second: tuple[Predictor, list[str] | None] | AdapterPredictor | None,
) -> None:
    """Inputs, toggles, both predictions and the weights: an interaction reruns this part, not the page.

    Only the open tab's chart is built and sent (the tabs track which one is open), so a browser draws two
    charts per answer rather than four; a classroom's thirty browsers notice (bench/classroom_load.py).
    """
    info = predictor.info
    inputs, verdicts = st.columns([3, 2], gap="large")  # side by side: both answers above the fold at 1280×720
    with inputs:
        text, pair, active = input_panel(fusion, info)
        override = what_if_panel(fusion, info, active)
    try:
        comparison = predictor.compare(text, pair, active, override)
    except DashboardError as err:
        verdicts.error(md(err))
        dev_set_browser(workspace, fusion, info.label_names)  # still there to load an example from
        return
    with verdicts:
        verdict_panel(info, comparison, loaded_gold(text, pair), override)
    zoom = st.toggle(
        "Zoom the colours to the weights shown",
        value=False,
        **urlstate.bound(urlstate.ZOOM),
        help="Weights are probabilities (0–1), shown on that scale by default. A briefly trained fusion stays close "
        "to the even share 1/N; zooming stretches the colours to the range shown so its small preferences become "
        "visible. The colour bar then says 'zoomed' and gives the range; hover a cell for its distance from 1/N.",
    )
    if isinstance(second, AdapterPredictor):
        composed_panel(comparison, second, text, pair)  # pair is None for a single-text task already
    elif second is not None:
        other, adapters = second
        try:
            compare_panel(comparison, other.compare(text, pair, adapters), zoom)
        except DashboardError as err:
            st.info(f"The second view: {md(err)}")
    tab_layers, tab_tokens, tab_learned, tab_drop, tab_words = st.tabs(
        urlstate.WEIGHT_VIEWS, on_change="rerun", **urlstate.bound(urlstate.VIEW)
    )
    if tab_layers.open:
        figure = charts.layer_adapter_heatmap(
            comparison.layer_weights,
            comparison.active_adapters,
            "Mean fusion weight per layer and adapter (over the tokens of this input)",
            zoom=zoom,
        )
        st.plotly_chart(figure)
    if tab_tokens.open:
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
        shown = len(comparison.active_adapters)
        if shown > 1:
            furthest = "; ".join(d.describe() for d in comparison.departures(layer))
            st.caption(f"Furthest from the even share 1/{shown} = {1 / shown:.2f} ({where}): {md(furthest)}.")
    if tab_learned.open:
        figure = charts.learned_weights_chart(comparison.learned_weights, comparison.active_adapters)
        if figure is None:
            st.info(
                f"{info.method.capitalize()} fusion has no per-layer learned weights: its weights depend on each "
                "token (see the other tabs). Weighted fusion learns one weight per adapter and layer."
            )
        else:
            st.plotly_chart(figure)

    if tab_drop.open:
        try:
            result = predictor.leave_one_out(text, pair, active)
        except DashboardError as err:
            st.info(md(err))
        else:
            st.plotly_chart(charts.leave_one_out_chart(result))
            st.caption(
                "Each bar is the fusion run again with that one adapter switched off (the others renormalised): "
                "how much its confidence in its answer moves. Below zero, the adapter was pulling towards the "
                "answer; a label on a bar means the answer flips without it."
            )
        if len(info.adapters) >= 3 and st.toggle("Average over the dev set", key="dev_drops", bind="query-params"):
            try:
                drops = cached_dev_drops(workspace, fusion, session_settings().data_dir_str)
            except DashboardError as err:
                st.info(md(err))
            else:
                st.plotly_chart(charts.dev_drop_chart(drops))

    if tab_words.open:
        salience_panel(predictor, text, pair, active, override)

    dev_set_browser(workspace, fusion, info.label_names)


def salience_panel(
    predictor: Predictor, text: str, pair: str | None, active: list[str], override: WeightOverride | None
) -> None:
    """Token salience of the target adapter alone and of the fusion, on one scale (computed only when open)."""
    try:
        with st.spinner("Integrated gradients for both models…"):
            result = predictor.salience(text, pair, active, override)
    except DashboardError as err:
        st.info(md(err))
        return
    st.plotly_chart(charts.salience_heatmap(result))
    towards, away = charts.SALIENCE_HUES
    hues = f"{towards.capitalize()} pushes towards “{result.label}”, {away} away from it."
    st.caption(md(f"{hues} {result.describe_differences()}"))
    st.caption(md(result.method_note()))


LOADED = "dev_loaded"  # (text, pair, gold) of the dev example last loaded: its gold label is shown with the answers


def use_dev_example(example: DevExample) -> None:
    """The dev example goes into the text box(es), and so into the URL; its gold label is remembered."""
    st.session_state[urlstate.TEXT] = example.text
    st.session_state[urlstate.PAIR] = example.pair or ""
    st.session_state[LOADED] = (example.text, example.pair or "", example.gold)


def loaded_gold(text: str, pair: str | None) -> str | None:
    """The gold label of the input if it is the dev example last loaded, unchanged (an edit makes it another)."""
    loaded = st.session_state.get(LOADED)
    return loaded[2] if loaded and loaded[:2] == (text, pair or "") else None


def load_dev_example(shown: list[DevExample]) -> None:
    """Table selection callback: the chosen dev example goes into the text box(es)."""
    rows = st.session_state["dev_table"].selection.rows
    if rows:
        use_dev_example(shown[rows[0]])


def dev_set_browser(workspace: Workspace, fusion: str, labels: tuple[str, ...]) -> None:
    """Where the fusion wins and loses against its target's adapter alone; a click loads an example above."""
    browser = st.expander(
        "Dev-set browser: where the fusion wins and loses", icon=":material/table_rows:", on_change="rerun", key="dev"
    )
    if not browser.open:
        return
    with browser:
        try:
            examples = cached_dev_examples(workspace, fusion, session_settings().data_dir_str)
        except DashboardError as err:
            st.info(md(err))
            return
        counts = dev_browser.outcome_counts(examples)
        for column, (outcome, count) in zip(st.columns(len(counts)), counts.items()):
            column.metric(outcome, count)
        difference = dev_browser.outcome_difference(examples, labels)
        if difference is not None:
            st.caption(f"Fusion − adapter accuracy on these {len(examples)} examples, paired: {difference.text()}.")
        gallery = dev_browser.disagreements(examples)
        if gallery:
            st.caption("Where the two disagree (click one to load it above):")
            for column, example in zip(st.columns(len(gallery)), gallery):
                column.button(
                    md(dev_browser.readable(example.text)[:60]),
                    key=f"disagree_{example.row}",
                    on_click=use_dev_example,
                    args=(example,),
                    help=md(f"gold {example.gold}: {example.outcome}"),
                    width="stretch",
                )
        gold_col, outcome_col = st.columns(2)
        golds = sorted({e.gold for e in examples})
        gold = gold_col.selectbox("Gold label", [None, *golds], format_func=lambda g: g or "any", key="dev_gold")
        outcome = outcome_col.selectbox(
            "Outcome", [None, *dev_browser.OUTCOMES], format_func=lambda o: o or "any", key="dev_outcome"
        )
        shown = dev_browser.filter_examples(examples, gold, outcome)
        st.caption(
            f"{len(shown)} of the first {len(examples)} dev examples (the task's fixed dev subset). "
            "Click a row to load it into the text box above."
        )
        st.dataframe(
            [e.as_row() for e in shown],
            hide_index=True,
            on_select=lambda: load_dev_example(shown),
            selection_mode="single-row",
            key="dev_table",
            column_config={
                "text": st.column_config.TextColumn(width="large"),
                "fusion confidence": st.column_config.NumberColumn(format="%.2f"),
                "outcome": st.column_config.TextColumn(width="medium"),  # "adapter right, fusion wrong" whole
            },
        )


explore(workspace, fusion, predictor, second)
