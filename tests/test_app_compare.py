"""The Compare methods page and its logic, on one real comparison (every method over pack adapters on real CB
data, tiny budget: the ``cb_comparison`` fixture), plus a broken ``comparison.json`` and an empty workspace."""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from fusionlab.composition.results import Comparison
from fusionlab.dashboard import compare_charts, compare_view
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.settings import HOME_KEY
from fusionlab.workspace import Workspace
from tests.test_app_pages import PAGES

pytestmark = pytest.mark.slow  # the fixture trains every method (about a minute)


def open_compare(home, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=120)
    at.session_state[HOME_KEY] = str(home)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at.run()


@pytest.fixture(scope="module")
def comparison(cb_comparison) -> Comparison:
    (saved,) = compare_view.saved_comparisons(Workspace(cb_comparison[0]))
    assert saved.slug == "cb-s42" and saved.error is None
    return saved.comparison


def test_the_table_orders_methods_by_evidence_and_measures_them_against_the_adapter(comparison):
    rows = comparison.table(ranked=True)
    score = comparison.score_label
    assert score == "dev accuracy"
    assert len(rows) == len(comparison.results) == 9
    groups = [{"better": 0, "worse": 2}.get(r["paired verdict"], 1) for r in rows]  # the adapter's own: none
    assert groups == sorted(groups)  # beyond noise better, then within noise, then beyond noise worse
    for group in (0, 2):
        ranked = [r[score] for r, g in zip(rows, groups) if g == group]
        assert ranked == sorted(ranked, reverse=True)  # ranked where the examples support it
    run_order = [r.method for r in comparison.results]
    within = [r["method"] for r, g in zip(rows, groups) if g == 1]
    assert within == [m for m in run_order if m in within] and "adapter" in within  # not ranked by noise
    alone = comparison.result("adapter").value
    for row in rows:
        assert row["vs adapter alone"] == pytest.approx(row[score] - alone)
        difference = comparison.result(row["method"]).vs_adapter
        if difference is not None:  # the paired interval behind the verdict, signed
            assert row["paired 95 %"] == f"[{difference.low:+.3f}, {difference.high:+.3f}]"
            assert (row["paired verdict"] == "within noise") == (difference.low <= 0 <= difference.high)
        assert row["latency vs encoder"] == pytest.approx(comparison.latency_ratio(comparison.result(row["method"])))
        assert (row["training (s)"] is None) == (row["method"] == "adapter")  # the adapter alone trained nothing
    assert sorted(rows, key=lambda r: r["method"]) == sorted(comparison.table(), key=lambda r: r["method"])
    shown = compare_view.display_rows(comparison)  # the page's rows: the same, the training time in words
    assert [r["method"] for r in shown] == [r["method"] for r in rows]
    assert [(r["training"], r["paired 95 %"], r["paired verdict"]) for r in shown if r["method"] == "adapter"] == [
        ("–", "–", "–")
    ]
    assert all(r["training"].endswith((" s", " min")) for r in shown if r["method"] != "adapter")
    from fusionlab.composition.compare import format_table

    header, _rule, *lines = format_table(comparison).splitlines()  # the CLI prints the same table, as text
    assert header.split()[:3] == ["method", "family", "dev"] and len(lines) == len(rows)
    adapter_line = next(line for line in lines if line.startswith("adapter "))
    assert "+0.0000" in adapter_line and adapter_line.rstrip().endswith("–")
    text = compare_view.describe(comparison)
    assert "3 steps of batch 8" in text and "24 dev examples" in text and "cb, mnli, rte" in text
    assert compare_view.fresh_mismatches(comparison) == []
    lorahub = next(d for d in compare_view.method_details(comparison) if d["method"] == "lorahub")
    assert "coefficients={cb:" in lorahub["details"]


def test_the_charts_plot_every_method_on_honest_axes(comparison):
    latency = compare_charts.accuracy_latency_chart(comparison)
    points = {t.name: (t.x[0], t.y[0]) for t in latency.data}
    assert set(points) == {r.method for r in comparison.results}
    for result in comparison.results:
        assert points[result.method] == pytest.approx((comparison.latency_ratio(result), result.value))
    low, high = latency.layout.yaxis.range
    assert 0 <= low <= min(comparison.majority_baseline, *(r.value for r in comparison.results))
    assert max(r.value for r in comparison.results) <= high <= 1.02
    assert any("majority class" in a.text for a in latency.layout.annotations)
    for trace in latency.data:  # every score with its 95 % interval, whole on the axis
        result = comparison.result(trace.name)
        assert trace.error_y.array[0] == pytest.approx(result.interval.high - result.value)
        assert low <= result.interval.low and result.interval.high <= high

    params = compare_charts.accuracy_parameters_chart(comparison)
    assert "adapter" not in {t.name for t in params.data}  # it trained nothing here: the dashed line instead
    assert any("cb adapter alone" in a.text for a in params.layout.annotations)
    assert params.layout.xaxis.type == "log"

    cut = compare_charts.cut_down_chart(comparison)
    drop, prune = cut.data
    assert list(drop.text) == [f"k={k}" for k in range(7)] and len(prune.x) == 3
    assert drop.y[0] == comparison.result("fusion:attention").value  # k = 0: the full fusion's own score
    for trace, points in ((drop, comparison.adapter_drop), (prune, comparison.pruning)):  # each point's interval
        assert list(trace.error_y.array) == pytest.approx([p.interval.high - p.metric for p in points])
        assert list(trace.error_y.arrayminus) == pytest.approx([p.metric - p.interval.low for p in points])
        low, high = cut.layout.yaxis.range  # the bars fit on the axis
        assert low <= min(p.interval.low for p in points) and max(p.interval.high for p in points) <= high
    rows = compare_view.cut_down_rows(comparison)  # the same points in the expander's table, paired
    assert len(rows) == len(comparison.adapter_drop) + len(comparison.pruning)
    assert [r["vs full fusion, paired"] == "" for r in rows] == [
        p.vs_full is None for p in comparison.adapter_drop + comparison.pruning
    ]
    for figure in (latency, params, cut):
        assert title_of(figure).startswith("cb: ")


def test_rows_are_ranked_only_where_their_paired_difference_is_beyond_noise(comparison):
    """Beyond noise better first (best first), then within noise in the run's order whatever their point
    estimates, then beyond noise worse (best first); a row saved without a paired interval is not ranked."""
    import dataclasses

    from fusionlab.uncertainty import Difference

    def row(method: str, value: float, low: float | None, high: float | None):
        paired = None if low is None else Difference("accuracy", value - 0.5, low, high, 24)
        return dataclasses.replace(comparison.result("merge:ties"), method=method, value=value, vs_adapter=paired)

    rows = [
        row("adapter", 0.5, None, None),
        row("within-high", 0.66, -0.01, 0.3),
        row("worse-a", 0.3, -0.3, -0.1),
        row("better-a", 0.7, 0.05, 0.35),
        row("within-low", 0.45, -0.2, 0.1),
        row("better-b", 0.8, 0.1, 0.5),
        row("worse-b", 0.4, -0.2, -0.01),
    ]
    ordered = dataclasses.replace(comparison, results=rows).ranked_results()
    assert [r.method for r in ordered] == [
        "better-b", "better-a", "adapter", "within-high", "within-low", "worse-b", "worse-a"
    ]  # fmt: skip


def test_a_comparison_saved_before_intervals_is_shown_without_claiming_any(comparison):
    """Rows without paired intervals and curve points without intervals (older JSON): the page says the order
    is the run's and nothing is known beyond noise, draws no bars, and shows "–" or empty cells, never None."""
    data = json.loads(comparison.to_json())
    for result in data["results"]:
        result.pop("vs_adapter")
        result.pop("interval")
    for point in [*data["adapter_drop"], *data["pruning"]]:
        point.pop("interval")
        point.pop("vs_full")
    older = Comparison.from_dict(data)
    assert [r.method for r in older.ranked_results()] == [r.method for r in older.results]  # the run's order
    assert compare_view.order_note(older) == compare_view.UNPAIRED_NOTE
    assert compare_view.order_note(comparison) == compare_view.ORDER_NOTE
    shown = compare_view.display_rows(older)
    assert all(r[c] == "–" for r in shown for c in ("95 % interval", "paired 95 %", "paired verdict"))
    assert all(
        r["95 % interval"] == "" and r["vs full fusion, paired"] == "" for r in compare_view.cut_down_rows(older)
    )
    chart = compare_charts.cut_down_chart(older)
    assert all(trace.error_y.array is None for trace in chart.data)
    assert "Bars" not in compare_view.cut_down_caption(older) and "Bars" in compare_view.cut_down_caption(comparison)


def test_labels_never_cover_a_marker_or_another_label():
    """Crowded points: a label moves below, right or left of its point rather than over a neighbour's marker
    (the ties label used to cover the average marker); a marker on top of another gets none (legend, hover)."""
    from fusionlab.dashboard.compare_charts import MARKER_HALF, _label_box, _overlap, label_positions

    xs, ys = [1.0, 1.001, 1.3, 1.02, 1.05], [0.70, 0.701, 0.70, 0.72, 0.70]
    texts = ["average", "ties", "attention", "task_arithmetic", "dare"]
    x_range, y_range = [0.9, 1.4], [0.5, 0.8]
    positions = label_positions(xs, ys, texts, x_range, y_range)
    assert positions[1] is None  # its marker sits on average's
    assert positions[0] == "bottom center"  # above average is task_arithmetic's marker: the label goes below
    assert positions[2] == "top center"  # a point on its own keeps the usual place
    points = [((x - 0.9) / 0.5, (y - 0.5) / 0.3) for x, y in zip(xs, ys)]
    mx, my = MARKER_HALF
    markers = [(x - mx, y - my, x + mx, y + my) for x, y in points]
    boxes = {i: _label_box(*points[i], 0.013 * len(texts[i]), p) for i, p in enumerate(positions) if p}
    for i, box in boxes.items():
        assert not any(_overlap(box, m) for j, m in enumerate(markers) if j != i), texts[i]
        assert not any(_overlap(box, other) for j, other in boxes.items() if j != i), texts[i]
    assert sum(p is not None for p in positions) >= 3  # most points keep a name on the chart


def test_the_page_shows_the_table_and_three_charts(cb_comparison):
    at = open_compare(cb_comparison[0])
    assert not at.exception and not at.error
    assert at.title[0].value == "Compare methods"
    assert len(at.dataframe[0].value) == 9
    titles = [title_of(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]
    assert titles == [
        "cb: dev score vs inference latency",
        "cb: dev score vs parameters trained for it",
        "cb: the attention fusion cut down, score vs latency",
    ]


def test_a_broken_comparison_is_named_and_a_missing_one_is_said(cb_comparison, tmp_path):
    home = tmp_path / "ws"
    shutil.copytree(cb_comparison[0] / "comparisons", home / "comparisons")
    broken = home / "comparisons" / "rte-s1"
    broken.mkdir()
    (broken / "comparison.json").write_text('{"options": {"target": "rte"')
    at = open_compare(home, {"comparison": "rte-s1"})
    assert any("rte-s1/comparison.json is not valid JSON" in e.value for e in at.error)
    at = open_compare(home, {"comparison": "no-such"})
    assert any("no-such" in w.value for w in at.warning)
    assert not at.error and len(at.get("plotly_chart")) == 3


def test_an_empty_workspace_says_how_to_make_a_comparison(tmp_path):
    at = open_compare(tmp_path / "empty")
    assert not at.exception
    assert any("fusionlab compare" in i.value for i in at.info)


def test_the_comparisons_models_are_offered_and_answer(cb_comparison, comparison):
    from fusionlab.dashboard.composed import AdapterPredictor, composed_models

    workspace = Workspace(cb_comparison[0])
    models = {m.key: m for m in composed_models(workspace, "cb")}
    ties = comparison.result("merge:ties")  # described with its interval and its paired verdict, as recorded
    assert ties.interval.text() in models["cb-s42/merge:ties"].describe()
    assert f"adapter alone (paired): {ties.vs_adapter.text()}" in models["cb-s42/merge:ties"].describe()
    assert "cb-s42/adapter" not in models  # the workspace has its own adapter already
    assert models["cb-s42/fusion:weighted"].kind == "fusion"
    assert models["cb-s42/merge:ties"].kind == "adapter" and models["cb-s42/lorahub"].kind == "adapter"
    assert composed_models(workspace, "rte") == []
    assert all(key.startswith("cb-s42/") and ".." not in key for key in models)  # what a link may name
    answer = AdapterPredictor(models["cb-s42/merge:ties"]).predict("I doubt it will rain.", "It will rain.")
    assert answer.labels == ("entailment", "contradiction", "neutral")
    assert abs(float(answer.probabilities.sum()) - 1) < 1e-5


def test_the_compare_pages_link_opens_the_fusion_beside_its_best_merged_adapter(cb_comparison, comparison):
    """The link the Compare methods page gives, followed: the Playground shows that fusion and that adapter."""
    from urllib.parse import parse_qsl

    from tests.test_app_pages import open_page

    query = dict(parse_qsl(compare_view.playground_query("cb-s42", comparison)))
    best = max((r for r in comparison.results if r.family in ("merging", "search")), key=lambda r: r.value)
    assert query == {"fusion": "cb-s42/fusion:attention", "compare": f"cb-s42/{best.method}"}
    at = open_page("playground.py", cb_comparison[0], query)
    assert not at.exception and not at.error
    assert at.selectbox[0].value == "cb-s42/fusion:attention"
    labels = [m.label.replace("\\", "") for m in at.metric]  # as rendered: md() escapes the ':'
    assert labels[:2] == ["cb adapter alone", "Fusion over 3 adapters"]
    assert f"One adapter: {best.method}" in labels
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any(f"{best.method} over cb, mnli, rte, trained by comparison cb-s42" in c for c in captions)


def test_the_runs_page_lists_the_comparison_run_and_links_to_its_table(cb_comparison):
    """The comparison ran as a run kind: the Runs page lists it and, in its details, points to the table."""
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=120)
    at.session_state[HOME_KEY] = str(cb_comparison[0])
    at.run()
    assert not at.exception, at.exception
    assert any("compare?comparison=cb-s42" in info.value for info in at.info), [i.value for i in at.info]
    assert any("compare · task cb · status finished" in caption.value for caption in at.caption)


def test_a_comparison_is_queued_from_the_page_as_a_run(tiny_workspace, tmp_path, monkeypatch):
    """The page's form queues a ``compare`` run for the worker, like ``fusionlab compare``; bad choices are told
    in the user's words and queue nothing."""
    from fusionlab import worker
    from fusionlab.runstore import RunStore

    home = shutil.copytree(tiny_workspace.root, tmp_path / "ws")
    monkeypatch.setattr(worker, "ensure_worker", lambda *a, **k: False)
    at = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=120)
    at.session_state[HOME_KEY] = str(home)
    at.run()
    assert not at.exception, at.exception
    assert "fusion:attention" in at.multiselect(key="cmp_methods").options
    at.selectbox(key="cmp_target").set_value("rte")
    at.multiselect(key="cmp_adapters").set_value(["rte"]).run()
    at.button(key="cmp_queue").click().run()
    assert "at least two adapters" in at.error[0].value
    store = RunStore(Workspace(home).runs_db)
    assert store.list_runs() == []
    at.multiselect(key="cmp_adapters").set_value(["rte", "mnli"]).run()
    at.multiselect(key="cmp_methods").set_value(["fusion:attention", "merge:ties"]).run()
    at.number_input(key="cmp_steps").set_value(5).run()
    at.button(key="cmp_queue").click().run()
    [run] = store.list_runs()
    assert (run.kind, run.name, run.status) == ("compare", "rte-s42", "queued")
    assert run.config["options"]["methods"] == ["fusion:attention", "merge:ties"]
    assert run.config["options"]["max_steps"] == 5
    at.button(key="cmp_queue").click().run()  # the same target and seed again: refused, said why
    assert "already queued" in at.error[0].value and len(store.list_runs()) == 1
