"""The dashboard's logic on a real trained workspace: inference, efficiency, mechanics, the Home view, charts."""

from __future__ import annotations

import dataclasses
import shutil
import threading

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F

from fusionlab.dashboard import charts, efficiency, mechanics, workspace_view
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.inference import Predictor
from fusionlab.dashboard.widgets import load_predictor
from fusionlab.data import TASKS
from fusionlab.data.tasks import BUILTIN_TASK_NAMES
from fusionlab.model import FusionModel
from fusionlab.pack import PACK_DIR, install_pack
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace

PREMISE = "A woman is reading a newspaper on a crowded train."
HYPOTHESIS = "Someone is reading."

pytestmark = pytest.mark.slow  # every test here uses the real encoder and the trained tiny workspace


@pytest.fixture(scope="module")
def attention(tiny_workspace) -> Predictor:
    return load_predictor(tiny_workspace, "rte-attention")


@pytest.fixture(scope="module")
def weighted(tiny_workspace) -> Predictor:
    return load_predictor(tiny_workspace, "rte-weighted")


@pytest.fixture
def workspace_copy(tiny_workspace, tmp_path) -> Workspace:
    """A private copy, for tests that delete checkpoints or queue runs."""
    shutil.copytree(tiny_workspace.root, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def _model_probabilities(predictor: Predictor, names: list[str], force_fusion: bool = False) -> np.ndarray:
    with torch.inference_mode():
        inputs = predictor.encode(PREMISE, HYPOTHESIS).inputs
        logits = predictor.model(**inputs, adapter_names=names, force_fusion=force_fusion).logits
    return torch.softmax(logits, dim=-1)[0].numpy()


# -- inference ------------------------------------------------------------------------------------------------
def test_compare_matches_the_model_for_single_and_fused(attention):
    comparison = attention.compare(PREMISE, HYPOTHESIS)
    assert comparison.active_adapters == ("rte", "boolq", "mnli", "sst2")
    assert comparison.single is not None and comparison.single.adapters == ("rte",)
    np.testing.assert_allclose(comparison.single.probabilities, _model_probabilities(attention, ["rte"]), atol=1e-6)
    np.testing.assert_allclose(
        comparison.fused.probabilities, _model_probabilities(attention, list(comparison.active_adapters)), atol=1e-6
    )
    assert comparison.fused.labels == ("entailment", "not_entailment")
    assert comparison.fused.label in comparison.fused.labels


def test_switching_adapters_off_renormalises_like_the_model(attention):
    comparison = attention.compare(PREMISE, HYPOTHESIS, active_adapters=["sst2", "rte"])
    assert comparison.active_adapters == ("rte", "sst2")  # the fusion's own order, whatever the caller's
    np.testing.assert_allclose(
        comparison.fused.probabilities, _model_probabilities(attention, ["rte", "sst2"]), atol=1e-6
    )
    assert comparison.layer_weights.shape == (attention.info.num_layers, 2)
    np.testing.assert_allclose(comparison.token_weights.sum(axis=-1), 1.0, atol=1e-5)


def test_one_adapter_left_on_still_uses_the_fusion_head(attention):
    comparison = attention.compare(PREMISE, HYPOTHESIS, active_adapters=["mnli"])
    np.testing.assert_allclose(
        comparison.fused.probabilities, _model_probabilities(attention, ["mnli"], force_fusion=True), atol=1e-6
    )
    assert comparison.fused.labels == attention.info.label_names  # rte's labels, not mnli's three classes
    np.testing.assert_allclose(comparison.layer_weights, 1.0)


def test_tokens_and_weights_cover_exactly_the_real_positions(attention):
    comparison = attention.compare(PREMISE, HYPOTHESIS)
    assert comparison.tokens[0] == "[CLS]" and comparison.tokens[-1] == "[SEP]"
    assert comparison.token_weights.shape == (attention.info.num_layers, len(comparison.tokens), 4)
    assert not comparison.truncated and comparison.kept_tokens == len(comparison.tokens)
    np.testing.assert_allclose(comparison.weights_at(None), comparison.token_weights.mean(axis=0))
    np.testing.assert_allclose(comparison.layer_weights, comparison.token_weights.mean(axis=1))


def test_long_input_reports_truncation(attention):
    long_text = " ".join(["The committee met again to discuss the budget."] * 20)
    comparison = attention.compare(long_text, HYPOTHESIS)
    assert comparison.truncated
    assert comparison.kept_tokens == attention.info.max_length == len(comparison.tokens)
    assert comparison.original_tokens > comparison.kept_tokens


def test_weighted_fusion_reports_its_learned_weights(weighted):
    comparison = weighted.compare(PREMISE, HYPOTHESIS, active_adapters=["rte", "boolq", "mnli"])
    learned = comparison.learned_weights
    assert learned is not None and learned.shape == (weighted.info.num_layers, 3)
    np.testing.assert_allclose(learned.sum(axis=1), 1.0, atol=1e-6)
    # weighted fusion gives every token the layer's learned weights
    np.testing.assert_allclose(comparison.layer_weights, learned, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "pair", "active", "message"),
    [
        ("", HYPOTHESIS, None, "empty"),
        ("   \n ", HYPOTHESIS, None, "empty"),
        (PREMISE, None, None, "fill in"),
        (PREMISE, "  ", None, "fill in"),
        (PREMISE, HYPOTHESIS, [], "switched off"),
        (PREMISE, HYPOTHESIS, ["rte", "cola"], "not part of fusion"),
    ],
)
def test_user_mistakes_raise_readable_errors(attention, text, pair, active, message):
    with pytest.raises(DashboardError, match=message):
        attention.compare(text, pair, active)


def test_fusion_with_a_deleted_adapter_fails_readably(workspace_copy):
    shutil.rmtree(workspace_copy.adapter_dir("mnli"))
    with pytest.raises(DashboardError, match="mnli"):
        Predictor(workspace_copy, "rte-attention")
    fusions = {row.name: row for row in workspace_view.summarize_workspace(workspace_copy).fusions}
    assert "missing adapter mnli" in fusions["rte-attention"].problem


def test_a_retrained_adapter_leaves_its_fusions_loading_the_same_logits(workspace_copy):
    before = Predictor(workspace_copy, "rte-weighted").compare(PREMISE, HYPOTHESIS)
    adapter = FusionModel.from_pretrained(workspace_copy.adapter_dir("boolq"))
    with torch.no_grad():
        adapter.adapter_manager.adapters["boolq"].layers[0].up.bias.add_(0.5)
    adapter.save_pretrained(workspace_copy.adapter_dir("boolq"), adapter_name="boolq")  # as a retrain would
    after = Predictor(workspace_copy, "rte-weighted").compare(PREMISE, HYPOTHESIS)
    np.testing.assert_array_equal(after.fused.probabilities, before.fused.probabilities)
    fusions = {row.name: row for row in workspace_view.summarize_workspace(workspace_copy).fusions}
    assert fusions["rte-weighted"].problem is None and fusions["rte-weighted"].older_versions == ("boolq",)
    assert "a newer version exists" in fusions["rte-weighted"].as_dict()["status"]

    shutil.rmtree(workspace_copy.adapters_dir / ".versions")
    with pytest.raises(DashboardError, match="boolq"):
        Predictor(workspace_copy, "rte-weighted")
    fusions = {row.name: row for row in workspace_view.summarize_workspace(workspace_copy).fusions}
    assert "boolq changed and the version it was trained on is gone" in fusions["rte-weighted"].problem


def test_unknown_fusion_fails_readably(tiny_workspace):
    with pytest.raises(DashboardError, match="no-such-fusion"):
        load_predictor(tiny_workspace, "no-such-fusion")


def test_every_builtin_task_has_examples_of_the_right_shape():
    for name, spec in TASKS.items():
        if name not in BUILTIN_TASK_NAMES:
            continue  # a user task registered by another test has no examples, by design
        examples = examples_for(name)
        assert examples, name
        assert all(bool(e.pair) == spec.is_pair for e in examples), name


def test_concurrent_sessions_share_one_predictor(attention):
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(attention.compare(PREMISE, HYPOTHESIS).fused.probabilities)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    for probabilities in results[1:]:
        np.testing.assert_allclose(probabilities, results[0], atol=1e-6)


def test_thirty_identical_requests_cost_one_model_call(tiny_workspace):
    predictor = Predictor(tiny_workspace, "rte-attention")  # a fresh one: its own count
    barrier = threading.Barrier(30)
    answers = []

    def student() -> None:
        barrier.wait()
        answers.append(predictor.compare(PREMISE, HYPOTHESIS))

    threads = [threading.Thread(target=student) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 30 and predictor.model_calls == 1
    assert all(answer is answers[0] for answer in answers)
    predictor.compare(PREMISE, HYPOTHESIS, ["rte", "mnli"])  # another selection is another question
    assert predictor.model_calls == 2
    with pytest.raises(ValueError):
        answers[0].token_weights[0, 0, 0] = 1.0  # a shared answer cannot be edited by one session


# -- efficiency -----------------------------------------------------------------------------------------------
def test_parameter_report_adds_up(attention):
    report = efficiency.parameter_report(attention)
    breakdown = attention.model.parameter_breakdown()
    assert report.base == sum(p.numel() for p in attention.model.base_model.parameters())
    assert report.added + report.base == report.total == breakdown["total"]
    assert report.trainable == report.fusion + report.fusion_head  # fusion training updates only these
    assert report.base_over_added == pytest.approx(report.base / report.added)
    assert report.base_over_trained == pytest.approx(report.base / report.trainable)
    assert report.base_over_trained > report.base_over_added  # fewer parameters trained than added
    assert 0 < report.trainable_share < 1
    assert (report.num_layers, report.method) == (attention.info.num_layers, "attention")
    assert report.fusion_per_layer * report.num_layers == report.fusion
    summary = efficiency.parameter_summary(report)
    assert f"{report.fusion_over_adapter:.1f}× one adapter" in summary and "small" not in summary


def test_checkpoint_sizes_are_the_bytes_of_their_files(tiny_workspace, attention):
    sizes = {s.name: s for s in efficiency.checkpoint_sizes(tiny_workspace, attention)}
    assert set(sizes) == {"rte-attention", "rte", "boolq", "mnli", "sst2"}
    adapter_dir = tiny_workspace.adapter_dir("rte")
    assert sizes["rte"].bytes == sum(f.stat().st_size for f in adapter_dir.iterdir())
    assert sizes["rte-attention"].kind == "fusion" and sizes["rte-attention"].bytes > 0


@pytest.fixture(scope="module")
def latency(attention) -> efficiency.LatencyReport:
    """One quick measurement (timings on a shared CI machine are noise; the shape of the report is not)."""
    return efficiency.measure_latency(attention, repeats=1, warmup=0)


def test_latency_is_measured_for_one_to_all_adapters(attention, latency):
    report = latency
    assert report.fusion_adapters == attention.info.adapters
    assert len(report.fusion_ms) == 4 and all(ms > 0 for ms in report.fusion_ms)
    assert report.base_ms > 0 and report.single_ms > 0 and report.single_adapter == "rte"
    assert report.tokens == efficiency.default_latency_tokens(attention.info.max_length)  # a realistic length
    for timing in (report.base, report.single, *report.fusion):
        assert timing.low <= timing.q1 <= timing.median <= timing.q3 <= timing.high
    short = efficiency.measure_latency(attention, repeats=3, warmup=0, tokens=32)
    assert short.tokens == 32 and short.repeats == 3
    with pytest.raises(ValueError, match="max_length"):
        efficiency.measure_latency(attention, tokens=attention.info.max_length + 1)
    with pytest.raises(ValueError, match="repeats"):
        efficiency.measure_latency(attention, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        efficiency.measure_latency(attention, warmup=-1)


# -- mechanics ------------------------------------------------------------------------------------------------
def _entropy(weights: np.ndarray) -> float:
    return float(-(weights * np.log(weights)).sum(axis=-1).mean())


def test_random_outputs_are_seeded_and_temperature_sharpens():
    a, b = mechanics.random_outputs(3, seed=7), mechanics.random_outputs(3, seed=7)
    assert torch.equal(a.outputs, b.outputs)
    assert not torch.equal(a.outputs, mechanics.random_outputs(3, seed=8).outputs)
    for method in mechanics.methods():
        sharp = mechanics.fuse(a, method, temperature=0.1, num_heads=4)
        flat = mechanics.fuse(a, method, temperature=5.0, num_heads=4)
        np.testing.assert_allclose(sharp.weights.sum(axis=-1), 1.0, atol=1e-5)
        assert _entropy(sharp.weights) < _entropy(flat.weights)
        assert "fresh" in sharp.layer_source
    assert mechanics.fuse(a, "attention", num_heads=4).per_head.shape == (4, 3)


def test_real_outputs_reproduce_the_models_fusion_weights(attention):
    comparison = attention.compare(PREMISE, HYPOTHESIS)
    layer = 2
    outputs = mechanics.real_outputs(attention, PREMISE, HYPOTHESIS, layer)
    assert outputs.outputs.shape == (len(comparison.tokens), 4, attention.model.hidden_size)
    assert outputs.tokens == comparison.tokens
    result = mechanics.fuse(outputs, "attention", temperature=1.0)
    assert "trained" in result.layer_source
    np.testing.assert_allclose(result.per_token, comparison.token_weights[layer], atol=1e-5)
    rows = mechanics.stats_rows(result)
    assert [r["adapter"] for r in rows] == ["rte", "boolq", "mnli", "sst2"]
    assert all(value is not None for row in rows for value in row.values())
    # what the adapters change, not hidden state + change: the outputs themselves are all ~0.998 alike
    assert result.compared == "change to the hidden state"
    whole = [F.cosine_similarity(outputs.outputs[:, 0], outputs.outputs[:, i], dim=-1).mean() for i in range(4)]
    assert min(whole) > 0.99 > float(np.ptp(result.cosine)) > 0.01  # the changes tell the adapters apart
    assert mechanics.fused_summary(result).startswith("Fused change to the hidden state: mean")
    assert result.trained_layer and "acts on the hidden state inside that sum too" in mechanics.scale_note(result)


def test_mechanics_rejects_bad_settings(attention):
    outputs = mechanics.random_outputs(3)
    with pytest.raises(ValueError, match="temperature"):
        mechanics.fuse(outputs, "attention", temperature=0)
    with pytest.raises(ValueError, match="method"):
        mechanics.fuse(outputs, "average")
    with pytest.raises(DashboardError, match="empty"):
        mechanics.real_outputs(attention, "", HYPOTHESIS, 0)


# -- the Home page's view -------------------------------------------------------------------------------------
def test_summary_lists_checkpoints_with_scores(tiny_workspace):
    summary = workspace_view.summarize_workspace(tiny_workspace)
    assert [row.name for row in summary.adapters] == ["boolq", "mnli", "rte", "sst2"]
    assert [row.name for row in summary.fusions] == ["rte-attention", "rte-weighted"]
    assert summary.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    fusion = summary.fusions[0]
    assert (fusion.task, fusion.method, fusion.metric, fusion.problem) == ("rte", "attention", "accuracy", None)
    assert 0.0 <= fusion.score <= 1.0 and 0.0 <= fusion.baseline <= 1.0
    assert fusion.as_dict()["status"] == "ready"
    assert workspace_view.run_status(tiny_workspace) == (None, 0)


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
def test_demo_is_queued_once_even_from_two_tabs_at_once(workspace_copy, monkeypatch, shared_data_dir):
    install_pack(workspace_copy, PACK_DIR)  # the demo's fusions are over the pack's adapters
    started: list[Workspace] = []
    monkeypatch.setattr(workspace_view, "ensure_worker", lambda ws: started.append(ws) or True)
    outcomes: list[object] = []

    def click() -> None:
        try:
            outcomes.append(workspace_view.prepare_demo(workspace_copy, str(shared_data_dir)))
        except DashboardError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queued = [o for o in outcomes if isinstance(o, workspace_view.DemoOutcome)]
    refused = [o for o in outcomes if isinstance(o, DashboardError)]
    assert len(queued) == 1 and len(refused) == 1
    assert "already being prepared" in str(refused[0])
    assert len(queued[0].run_ids) == 2 and len(started) == 1
    store_runs = workspace_view.pending_demo_runs(RunStore(workspace_copy.runs_db), "/other")
    assert sorted(r.id for r in store_runs) == sorted(queued[0].run_ids)  # recognised whatever the data dir
    assert workspace_view.run_status(workspace_copy) == (None, 2)


def test_the_demo_says_which_data_it_lacks_and_queues_nothing(workspace_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(workspace_view, "ensure_worker", lambda ws: pytest.fail("no worker for a refused demo"))
    with pytest.raises(DashboardError) as caught:
        workspace_view.prepare_demo(workspace_copy, str(tmp_path / "no-data"))
    message = str(caught.value)
    assert "nothing was queued" in message
    assert "imdb train: not in the data directory" in message and "rte validation" in message
    assert "Hub is switched off" in message
    assert workspace_view.run_status(workspace_copy) == (None, 0)


# -- charts ---------------------------------------------------------------------------------------------------
def _check(fig: go.Figure | None) -> go.Figure:
    assert isinstance(fig, go.Figure)
    assert fig.layout.title.text
    assert fig.layout.xaxis.title.text or fig.layout.yaxis.title.text
    assert fig.data and all(
        np.size(getattr(trace, "z", None) if getattr(trace, "z", None) is not None else trace.y) for trace in fig.data
    )
    return fig


def test_playground_charts(attention, weighted):
    comparison = attention.compare(PREMISE, HYPOTHESIS)
    heat = _check(charts.layer_adapter_heatmap(comparison.layer_weights, comparison.active_adapters, "t"))
    assert heat.layout.yaxis.title.text == "transformer layer"
    tokens = _check(charts.token_adapter_heatmap(comparison.tokens, comparison.weights_at(0), ("rte",) * 4, "t"))
    assert list(tokens.layout.xaxis.ticktext) == list(comparison.tokens)
    assert charts.learned_weights_chart(comparison.learned_weights, comparison.active_adapters) is None
    learned = weighted.compare(PREMISE, HYPOTHESIS).learned_weights
    _check(charts.learned_weights_chart(learned, weighted.info.adapters))


def test_weight_colours_are_absolute_unless_zoomed_and_mark_the_even_share():
    weights = np.array([[0.21, 0.29], [0.24, 0.26]])
    absolute = charts.weight_colors(weights, even_share=0.25)
    assert (absolute["zmin"], absolute["zmax"]) == (0.0, 1.0)  # a softmax's own range: 0.21 vs 0.29 looks close
    assert absolute["colorbar"]["title"]["text"] == "fusion weight"
    assert "1/N = 0.25" in absolute["colorbar"]["ticktext"]
    zoomed = charts.weight_colors(weights, zoom=True, even_share=0.25)
    assert (zoomed["zmin"], zoomed["zmax"]) == (0.21, 0.29)  # stretched to what is shown, and it says so
    assert "zoomed" in zoomed["colorbar"]["title"]["text"]
    assert zoomed["colorbar"]["ticktext"][0] == "0.21" and "1/N = 0.25" in zoomed["colorbar"]["ticktext"]
    even = charts.weight_colors(np.full((2, 2), 0.25), zoom=True, even_share=0.25)
    assert (even["zmin"], even["zmax"]) == (0.0, 1.0)  # nothing to stretch: zooming a flat map stays absolute
    outside = charts.weight_colors(np.array([[0.6, 0.7]]), zoom=True, even_share=0.5)
    assert not any(t.startswith("1/N") for t in outside["colorbar"]["ticktext"])  # 1/N off the zoomed bar


def test_charts_return_none_instead_of_empty_figures():
    assert charts.layer_adapter_heatmap(np.zeros((0, 0)), [], "t") is None
    assert charts.token_adapter_heatmap([], np.zeros((0, 2)), ["a", "b"], "t") is None
    assert charts.checkpoint_size_chart([]) is None


def test_efficiency_and_mechanics_charts(tiny_workspace, attention, latency):
    report = efficiency.parameter_report(attention)
    params = _check(charts.parameter_chart(report))
    assert "millions" in params.layout.xaxis.title.text and params.layout.xaxis.range[0] == 0
    _check(charts.checkpoint_size_chart(efficiency.checkpoint_sizes(tiny_workspace, attention)))
    assert _check(charts.latency_chart(latency)).layout.yaxis.title.text == "latency (ms)"
    result = mechanics.fuse(mechanics.random_outputs(4), "attention", 0.5, num_heads=2)
    weights = _check(charts.mechanics_weights_chart(result))
    assert len(weights.data) == 4 and list(weights.data[0].x) == ["head 1", "head 2"]
    _check(charts.mechanics_similarity_chart(result))


def test_departures_name_the_tokens_furthest_from_the_even_share(attention):
    comparison = attention.compare(PREMISE, HYPOTHESIS)
    weights = comparison.weights_at(2)
    even = 1 / weights.shape[1]
    found = comparison.departures(2, count=3)
    assert len(found) == 3 and abs(found[0].from_even) == pytest.approx(np.abs(weights - even).max(), abs=1e-6)
    assert [abs(d.from_even) for d in found] == sorted((abs(d.from_even) for d in found), reverse=True)
    first = found[0]
    t, a = first.position, comparison.active_adapters.index(first.adapter)
    assert comparison.tokens[t] == first.token
    assert weights[t, a] == pytest.approx(first.weight) and first.weight - even == pytest.approx(first.from_even)
    assert first.describe().startswith(f"{first.token} → {first.adapter} ")


def test_leave_one_out_reruns_the_fusion_without_each_adapter(attention):
    full = attention.compare(PREMISE, HYPOTHESIS)
    result = attention.leave_one_out(PREMISE, HYPOTHESIS)
    answer = full.fused.labels.index(full.fused.label)
    assert (result.label, result.confidence) == (full.fused.label, full.fused.confidence)
    assert [d.adapter for d in result.drops] == list(full.active_adapters)
    for drop in result.drops:
        without = attention.compare(PREMISE, HYPOTHESIS, [a for a in full.active_adapters if a != drop.adapter])
        assert drop.probability == pytest.approx(float(without.fused.probabilities[answer]))
        assert drop.label == without.fused.label
        assert result.change(drop) == pytest.approx(drop.probability - full.fused.confidence)
    chart = charts.leave_one_out_chart(result)
    assert title_of(chart).startswith(f"Drop each adapter: the fusion's confidence in '{result.label}'")
    assert len(chart.data[0].y) == len(full.active_adapters)
    with pytest.raises(DashboardError, match="at least two adapters"):
        attention.leave_one_out(PREMISE, HYPOTHESIS, ["rte"])


def test_the_dev_browser_scores_each_example_both_ways(attention, shared_data_dir, tmp_path, monkeypatch):
    from fusionlab.dashboard import dev_browser

    examples = dev_browser.dev_examples(attention, str(shared_data_dir), limit=24)
    assert len(examples) == 24 and {e.gold for e in examples} <= set(attention.info.label_names)
    assert sum(dev_browser.outcome_counts(examples).values()) == 24
    # the batched dev scoring and the Playground's one-input path give the same answers
    for example in [e for e in examples if e.fused_confidence > 0.55][:4]:
        answer = attention.compare(example.text, example.pair)
        assert (answer.fused.label, answer.single.label) == (example.fused, example.single)
    wins = dev_browser.filter_examples(examples, outcome=dev_browser.FUSION_WINS)
    assert all(e.fused == e.gold != e.single for e in wins)
    gold = examples[0].gold
    assert all(e.gold == gold for e in dev_browser.filter_examples(examples, gold=gold))
    assert set(examples[0].as_row()) >= {"text", "second text", "gold", "adapter alone", "fusion", "outcome"}
    gallery = dev_browser.disagreements(examples)
    assert gallery == [e for e in gallery if e.disagree] and len(gallery) <= 4
    assert len(gallery) == min(4, sum(e.disagree for e in examples))
    if any(e.outcome == dev_browser.FUSION_WINS for e in examples):
        assert gallery[0].outcome == dev_browser.FUSION_WINS  # fusion's wins and losses in turn, its win first
    # the two counts as a paired difference: accuracy with the fusion minus with the adapter, on these examples
    counts = dev_browser.outcome_counts(examples)
    difference = dev_browser.outcome_difference(examples, attention.info.label_names)
    net = counts[dev_browser.FUSION_WINS] - counts[dev_browser.ADAPTER_WINS]
    assert difference.examples == 24 and difference.value == pytest.approx(net / 24)
    assert difference.low <= difference.value <= difference.high
    assert dev_browser.outcome_difference([dataclasses.replace(examples[0], single=None)], ("a", "b")) is None

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DashboardError, match="needs the task's dev split: rte validation: not in the data directory"):
        dev_browser.dev_examples(attention, str(tmp_path))


def test_dataset_markup_is_read_as_text_in_the_browser():
    from fusionlab.dashboard.dev_browser import DevExample, readable

    assert readable("Great cast.<br /><br />Awful script.<BR>") == "Great cast. Awful script."
    review = DevExample(0, "Fine.<br /><br />Not great.", None, "neg", "neg", 0.9, "pos")
    assert review.as_row()["text"] == "Fine. Not great." and review.text.count("<br />") == 2  # loaded as scored
    assert review.disagree and not DevExample(1, "x", None, "pos", "pos", 0.9, "pos").disagree


def test_leave_one_out_over_the_dev_set(attention, shared_data_dir):
    from fusionlab.dashboard import dev_browser

    drops = dev_browser.dev_leave_one_out(attention, str(shared_data_dir), limit=24)
    examples = dev_browser.dev_examples(attention, str(shared_data_dir), limit=24)
    assert drops.metric == "accuracy" and drops.examples == 24
    # the same examples, the same fusion: its accuracy is the browser's share of right answers
    assert drops.with_all == pytest.approx(sum(e.fused == e.gold for e in examples) / 24)
    assert list(drops.without) == list(attention.info.adapters)
    assert all(0.0 <= v <= 1.0 for v in drops.without.values())
    assert drops.change("rte") == pytest.approx(drops.without["rte"] - drops.with_all)
    assert drops.with_all_interval.value == drops.with_all and drops.with_all_interval.examples == 24
    chart = charts.dev_drop_chart(drops)
    assert title_of(chart).startswith("Over 24 dev examples: accuracy without each adapter")
    assert f"(with all: {drops.with_all:.3f} {drops.with_all_interval.bounds_text()})" in title_of(chart)
    assert len(chart.data[0].y) == len(attention.info.adapters)


def test_library_messages_are_shown_in_the_forms_words():
    from fusionlab.config import FusionConfig
    from fusionlab.dashboard.errors import in_user_words

    with pytest.raises(ValueError) as caught:
        FusionConfig(adapter_names=[])
    assert in_user_words(caught.value) == "Adapters: must name at least one adapter"
    assert (
        in_user_words("ModelConfig.max_length: must be at most 8,192") == "Max length (tokens): must be at most 8,192"
    )
    assert in_user_words("AdapterConfig.non_linearity: bad") == "Non linearity: bad"  # no label: the field, readable
    assert in_user_words("choose at least one task") == "choose at least one task"


def test_input_the_model_cannot_read_is_flagged():
    """Emoji and Chinese come out of the tokenizer as [UNK]; Cyrillic is read letter by letter: the answer on
    either is a guess, however confident, and the Playground says so. English (and French) pass."""
    from fusionlab.base_model import load_tokenizer
    from fusionlab.prediction import encode_input, unfamiliar_input

    tokenizer = load_tokenizer()

    def check(text: str, pair: str | None = None) -> str | None:
        encoded = encode_input(tokenizer, text, pair, 128)
        return unfamiliar_input((text, pair), encoded.tokens, tokenizer.unk_token)

    assert "unknown to the model's vocabulary" in check("😀😀😀 🎬🍿")
    assert "unknown to the model's vocabulary" in check("这部电影非常好看，演员也很棒。")
    assert "not in the Latin script" in check("Этот фильм просто великолепен!")
    assert check("This movie is absolutely fantastic!") is None
    assert check("A man is playing a guitar.", "Someone plays music 🎸.") is None  # one emoji among words


def test_a_fusions_own_adapter_is_found_by_its_task_not_its_name(tiny_workspace, tmp_path):
    """A user's CB adapter named ``mycb``, fused with sources: the Playground sets it beside the fusion as the
    target's own adapter, as training paired them (by the adapter's recorded task), instead of saying the target
    has none. A checkpoint whose adapters record no task falls back to the adapter named as the target."""
    import json

    from fusionlab.dashboard.inference import fusion_info, own_adapter_label
    from fusionlab.workspace import CHECKPOINT_MARKER

    meta = json.loads((tiny_workspace.fusion_dir("rte-attention") / CHECKPOINT_MARKER).read_text())
    assert fusion_info(tiny_workspace, "rte-attention").own_adapter == "rte"
    for adapter in meta["adapters"]:
        adapter["name"] = "myrte" if adapter["name"] == "rte" else adapter["name"]
    meta["fusion_config"]["adapter_names"] = [
        "myrte" if n == "rte" else n for n in meta["fusion_config"]["adapter_names"]
    ]
    workspace = Workspace(tmp_path / "ws").ensure()
    renamed = workspace.fusion_dir("renamed")
    renamed.mkdir(parents=True)
    (renamed / CHECKPOINT_MARKER).write_text(json.dumps(meta))
    info = fusion_info(workspace, "renamed")
    assert info.target == "rte" and info.own_adapter == "myrte" and info.has_target_adapter
    assert (
        own_adapter_label(info) == "myrte (rte)"
        and own_adapter_label(fusion_info(tiny_workspace, "rte-attention")) == "rte"
    )
    for adapter in meta["adapters"]:
        adapter["adapter_config"]["task_name"] = "sst2"  # none of them trained on RTE, none named rte
    (renamed / CHECKPOINT_MARKER).write_text(json.dumps(meta))
    assert fusion_info(workspace, "renamed").own_adapter is None
