"""The composition lab: AdapterDrop, the coefficient search, interleaved timing, the comparison's records, and
one real comparison of every method over pack adapters on real CB data (tiny budget)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from fusionlab.composition import dropping
from fusionlab.composition.merging import MergeOptions, add_merged_adapter
from fusionlab.composition.results import CompareOptions, Comparison
from fusionlab.composition.search import SCRATCH, SearchOptions, evolve, probe_loss, search_coefficients
from fusionlab.config import AdapterConfig
from fusionlab.runspec import run_record
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace
from tests.conftest import tiny_encoder
from tests.test_model import batch, build, perturb_adapters


def trained_fusion(method="attention"):
    model = build(tiny_encoder("bert"), method).eval()
    perturb_adapters(model)
    with torch.no_grad():
        for layer in model.fusion_layers:
            for p in layer.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("method", ["attention", "weighted", "average"])
def test_adapter_drop_of_zero_layers_is_the_full_fusion_exactly(method):
    model = trained_fusion(method)
    ids, mask = batch()
    full = model(input_ids=ids, attention_mask=mask, output_fusion_weights=True)
    none_dropped = model(input_ids=ids, attention_mask=mask, output_fusion_weights=True, drop_first_layers=0)
    torch.testing.assert_close(none_dropped.logits, full.logits, rtol=0, atol=0)
    one = model(input_ids=ids, attention_mask=mask, output_fusion_weights=True, drop_first_layers=1)
    assert not torch.allclose(one.logits, full.logits)
    assert len(one.fusion_weights) == model.num_layers - 1  # only the layers that still fuse
    every = model(input_ids=ids, attention_mask=mask, drop_first_layers=model.num_layers)
    plain = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(every.last_hidden_state, plain, rtol=0, atol=0)  # all dropped: the plain encoder


def test_adapter_drop_out_of_range_names_the_limit():
    model = trained_fusion()
    ids, mask = batch()
    with pytest.raises(ValueError, match="drop_first_layers must be between 0 and 2, got 3"):
        model(input_ids=ids, attention_mask=mask, drop_first_layers=3)


def test_a_merged_adapter_gets_a_head_for_the_target_and_runs_alone():
    model = trained_fusion()
    target = AdapterConfig(task_name="target", num_labels=3, label_names=["x", "y", "z"])
    add_merged_adapter(model, ["a", "c"], "average", "merged", target)
    assert model.adapter_manager.configs["merged"].adapter_size == 8  # the sources' size, the target's labels
    assert model.label_names(["merged"]) == ["x", "y", "z"]
    ids, mask = batch()
    assert model(input_ids=ids, attention_mask=mask, adapter_names=["merged"]).logits.shape == (2, 3)
    with pytest.raises(ValueError, match="differ in size"):
        add_merged_adapter(model, ["a", "b"], "average", "mixed", target)  # sizes 8 and 16 do not line up


def test_probe_loss_ranks_separable_features_below_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(40) % 2
    noise = torch.randn(40, 16, generator=generator)
    separable = noise.clone()
    separable[:, 0] += 4.0 * (2 * labels - 1)
    assert probe_loss(separable, labels, 2) < 0.3 < probe_loss(noise, labels, 2)


def test_the_evolution_strategy_finds_a_quadratics_minimum_and_is_seeded():
    target = torch.tensor([0.8, -0.4, 0.2])

    def score(c):
        return float(((c - target) ** 2).sum())

    options = SearchOptions(evaluations=120, population=10, seed=1)
    tried = evolve(score, torch.zeros(3), options)
    assert len(tried) == 120
    best = min(tried, key=lambda pair: pair[1])
    assert best[1] < 0.02 < tried[0][1]
    assert [s for _, s in evolve(score, torch.zeros(3), options)] == [s for _, s in tried]


def test_a_candidate_is_scored_without_dropout_and_every_mode_is_restored():
    """A model in training mode, its encoder and an adapter with dropout: the search's sentence vectors are the
    same twice (each candidate's score is not noise), and every module's mode is what it was."""
    from fusionlab.composition.search import sentence_vectors

    model = trained_fusion().train()
    model.adapter_manager.add_adapter("noisy", AdapterConfig(adapter_size=8, task_name="noisy", dropout=0.5))
    model.heads["noisy"] = model._new_head("noisy")
    perturb_adapters(model)
    model.base_model.eval()  # as transformers loads it: the one module in eval mode
    before = {name: module.training for name, module in model.named_modules()}
    ids, mask = batch()
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1])}
    first, second = (sentence_vectors(model, inputs, "noisy") for _ in range(2))
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert {name: module.training for name, module in model.named_modules()} == before


def test_the_coefficient_search_scores_real_candidates_and_cleans_up():
    model = trained_fusion()
    ids, mask = batch(lengths=(7, 4, 6, 5, 7, 3, 6, 4))
    few_shot = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1] * 4)}
    result = search_coefficients(model, ["a", "c"], few_shot, 2, SearchOptions(evaluations=9, population=4))
    assert result.adapters == ("a", "c") and len(result.coefficients) == 2
    assert result.scores[0] == result.start_score and len(result.scores) == 9
    assert result.score == min(result.scores) <= result.start_score
    assert SCRATCH not in model.adapter_manager.names and SCRATCH not in model.heads
    add_merged_adapter(
        model,
        ["a", "c"],
        "linear",
        "hub",
        AdapterConfig(task_name="t", num_labels=2),
        MergeOptions(coefficients=result.coefficients),
    )
    weights = dict(model.adapter_manager.adapters["hub"].state_dict())
    a, c = (model.adapter_manager.adapters[n].state_dict() for n in ("a", "c"))
    w = result.coefficients
    torch.testing.assert_close(
        weights["layers.0.up.weight"], w[0] * a["layers.0.up.weight"] + w[1] * c["layers.0.up.weight"]
    )


def test_interleaved_timing_calls_each_configuration_once_per_round_after_a_warm_up():
    calls = {"a": 0, "b": 0}

    def count(name):
        def call():
            calls[name] += 1

        return call

    timed = dropping.time_interleaved({"a": count("a"), "b": count("b")}, repeats=5)
    assert calls == {"a": 6, "b": 6} and set(timed) == {"a", "b"} and all(v >= 0 for v in timed.values())


def test_compare_options_name_the_bad_field():
    with pytest.raises(ValueError, match="at least two adapters"):
        CompareOptions(target="rte", adapters=["rte"])
    with pytest.raises(ValueError, match="max_steps"):
        CompareOptions(target="rte", adapters=["rte", "mnli"], max_steps=10**9)
    with pytest.raises(ValueError, match="target"):
        CompareOptions(target="../etc", adapters=["rte", "mnli"])
    with pytest.raises(ValueError, match="unknown field"):
        CompareOptions.from_dict({"target": "rte", "adapters": ["rte", "mnli"], "steps": 3})


def attention_verdict(comparison: Comparison) -> str:
    return comparison.result("fusion:attention").vs_adapter.verdict()


@pytest.mark.slow
def test_every_method_over_pack_adapters_on_real_cb_data(cb_comparison):
    """The whole comparison on real code paths: pack adapters, real CB examples, the CLI's table; every score from
    a fresh load of the saved weights equals the training loop's own, and AdapterDrop at k = 0 and the unpruned
    fusion reproduce the attention fusion's score."""
    from fusionlab.model import FusionModel

    home, out = cb_comparison
    saved = home / "comparisons" / "cb-s42" / "comparison.json"
    comparison = Comparison.load(saved)
    assert Comparison.from_json(comparison.to_json()) == comparison  # the JSON round trip is lossless
    methods = [r.method for r in comparison.results]
    assert methods == ["adapter", "fusion:attention", "fusion:weighted", "fusion:average", "merge:average",
                       "merge:task_arithmetic", "merge:ties", "merge:dare", "lorahub"]  # fmt: skip
    for method in methods:
        assert method in out
    adapter = comparison.result("adapter")
    for result in comparison.results:
        assert result.agrees_with_training, result
        assert result.latency_ms > 0 and 0 <= result.value <= 1
        # every score with its interval on the same dev examples, every gain paired with the adapter's
        assert result.interval.examples == comparison.dev_examples
        assert result.interval.low <= result.value <= result.interval.high and result.interval.value == result.value
        if result is not adapter:
            assert result.vs_adapter.value == pytest.approx(result.value - adapter.value)
            assert result.vs_adapter.verdict() in ("better", "worse", "within noise")
    assert adapter.vs_adapter is None
    verdicts = {row["method"]: row["paired verdict"] for row in comparison.table()}
    assert verdicts["adapter"] is None and verdicts["fusion:attention"] == attention_verdict(comparison)
    attention = comparison.result("fusion:attention")
    assert comparison.adapter_drop[0].metric == attention.value  # k = 0 is the full fusion
    assert [p.dropped_layers for p in comparison.adapter_drop] == list(range(7))
    assert comparison.pruning[0].metric == attention.value and len(comparison.pruning[-1].adapters) == 1
    for curve in (comparison.adapter_drop, comparison.pruning):  # every point with its interval; cut down, paired
        full, *cut = curve
        assert full.vs_full is None and full.interval == attention.interval
        for point in curve:
            assert point.interval.examples == comparison.dev_examples and point.interval.value == point.metric
        for point in cut:
            assert point.vs_full.value == pytest.approx(point.metric - full.metric)
            assert point.vs_full.examples == comparison.dev_examples and point.vs_full.text() in point.text()
    assert "  drop layer 1 " in out and "vs the full fusion" in out  # the CLI prints each point with both
    assert comparison.result("adapter").trained_params == 0
    assert comparison.result("merge:ties").inference_params < attention.inference_params
    assert comparison.result("fusion:weighted").details == {"learning_rate_scales": {"weighted.fusion_weights": 100.0}}
    assert comparison.result("fusion:attention").details == {}  # nothing scaled, nothing recorded
    hub = comparison.result("lorahub").details
    assert set(hub["coefficients"]) == {"cb", "mnli", "rte"} and hub["search_score"] <= hub["start_score"]
    merged = FusionModel.from_pretrained(saved.parent / comparison.result("merge:ties").checkpoint)
    assert merged.adapter_manager.names == ["cb-merge-ties"]  # a standalone adapter checkpoint, sources folded in
    assert json.loads(saved.read_text())["options"]["adapters"] == ["cb", "mnli", "rte"]
    assert comparison.options.latency_repeats == 1  # the command line's --latency-repeats reached the run
    [run] = RunStore(Workspace(home).runs_db).list_runs()  # a run like any training: queued, run by the worker
    record = run_record(run)
    assert (record["kind"], record["name"], record["task"], record["status"]) == ("compare", "cb-s42", "cb", "finished")
    assert record["metrics"] == {r.method: r.value for r in comparison.results}
    assert run.artifacts["comparison"] == str(saved) and run.device != "inline"


def test_the_bench_summary_keeps_what_each_method_chose_and_the_pruning_order(cb_comparison, capsys):
    """``bench/compare_methods.py``'s JSON holds what the docs cite: per seed, the search's coefficients and the
    adapters left at each pruning step (the one the fusion leaned on least goes first), beside the scores."""
    import sys

    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "bench"))
    from compare_methods import print_tables, summarise

    comparison = Comparison.load(cb_comparison[0] / "comparisons" / "cb-s42" / "comparison.json")
    summary = summarise({"cb": [comparison]})["cb"]
    [hub] = summary["methods"]["lorahub"]["details"]
    assert hub["coefficients"] == comparison.result("lorahub").details["coefficients"]
    [left] = summary["pruning_adapters"]
    assert left[0] == ["cb", "mnli", "rte"] and [len(a) for a in left] == [3, 2, 1]
    assert all(set(later) < set(earlier) for earlier, later in itertools.pairwise(left))  # one adapter pruned a step
    assert summary["methods"]["fusion:attention"]["values"] == [comparison.result("fusion:attention").value]
    print_tables({"cb": summary})
    assert "| lorahub |" in capsys.readouterr().out
    older = Comparison.from_json(comparison.to_json())
    older.options.seed = 43
    older.result("fusion:weighted").details = {}  # a seed trained before weighted fusion's logits had a scale
    with pytest.raises(SystemExit, match=r"cb fusion:weighted: seeds trained with different learning-rate scales"):
        summarise({"cb": [comparison, older]})


@pytest.mark.parametrize("value", ["0", "101", "many"])
def test_compare_refuses_unbounded_latency_rounds_in_the_users_words(value, tmp_path, capsys):
    from fusionlab.cli import main

    home = tmp_path / "ws"
    with pytest.raises(SystemExit) as raised:
        main(["compare", "cb", "--adapters", "cb,mnli", "--latency-repeats", value, "--home", str(home)])
    assert raised.value.code == 2 and "--latency-repeats must be" in capsys.readouterr().err
    assert not home.exists()  # refused before anything was queued


@pytest.mark.slow
def test_one_method_of_a_finished_comparison_is_measured_again_alone(cb_comparison, tmp_path, shared_data_dir, capsys):
    """``bench/compare_methods.py --remeasure fusion:weighted`` on a comparison whose weighted row was trained
    before weighted fusion's logits had their scale: only that row is trained again, it comes out as the full run
    trained it (each method is seeded by the comparison's seed alone), every other row and the curves stay, every
    configuration is timed again (``retime``, as ``--retime`` does); a rerun finds it current and trains nothing.
    The adapter is not remeasured."""
    import sys

    from fusionlab.composition.compare import remeasure
    from fusionlab.workspace import Workspace
    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "bench"))
    from compare_methods import remeasured

    home, saved = _copy_of(cb_comparison, tmp_path)
    full_run = Comparison.load(saved)
    stale = Comparison.load(saved)
    stale.result("fusion:weighted").details = {}  # as trained before the scale: the bench finds it stale
    stale.result("fusion:weighted").value = 0.0
    stale.save(saved)
    saved.write_text(saved.read_text().replace('"latency_ms": ', '"latency_ms": 9000000'))  # stale: >= 9e6 ms

    after = remeasured(Workspace(home), full_run.options, ["fusion:weighted"], str(shared_data_dir))
    assert "remeasured fusion:weighted" in capsys.readouterr().out
    assert Comparison.load(saved) == after
    weighted, before = after.result("fusion:weighted"), full_run.result("fusion:weighted")
    assert weighted.details == {"learning_rate_scales": {"weighted.fusion_weights": 100.0}}
    assert (weighted.value, weighted.interval, weighted.vs_adapter) == (
        before.value,
        before.interval,
        before.vs_adapter,
    )
    others = [r.method for r in full_run.results if r.method != "fusion:weighted"]
    assert [r.method for r in after.results] == [r.method for r in full_run.results]  # the table's order kept
    for method in others:  # not trained again: the same checkpoint, time and score
        kept, was = after.result(method), full_run.result(method)
        assert (kept.value, kept.train_seconds, kept.checkpoint) == (was.value, was.train_seconds, was.checkpoint)
    assert [p.metric for p in after.adapter_drop] == [p.metric for p in full_run.adapter_drop]  # curves kept
    for point in [*after.results, *after.adapter_drop, *after.pruning]:
        assert 0 < point.latency_ms < 9e6  # every configuration timed again (retime: a real one is well under)
    assert 0 < after.base_latency_ms < 9e6

    again = remeasured(Workspace(home), full_run.options, ["fusion:weighted"], str(shared_data_dir))
    assert "already trained as they are now" in capsys.readouterr().out and again == after
    with pytest.raises(ValueError, match="the adapter alone is what every row is paired with"):
        remeasure(full_run.options, Workspace(home), ["adapter"], str(shared_data_dir))


@pytest.mark.slow
def test_curves_saved_without_intervals_are_scored_again_with_them(cb_comparison, tmp_path, shared_data_dir, capsys):
    """``bench/compare_methods.py --rescore-curves`` on a comparison whose curve points were saved before they
    recorded intervals: the saved attention fusion scores every point again, to the very metric recorded, and
    each gets its interval and paired difference (latencies kept). A point recorded otherwise is refused: the
    checkpoint would not be the one measured."""
    import sys

    from fusionlab.composition.compare import rescore_curves
    from fusionlab.workspace import Workspace
    from tests.conftest import REPO

    sys.path.insert(0, str(REPO / "bench"))
    from compare_methods import needs_intervals

    home, saved = _copy_of(cb_comparison, tmp_path)
    full_run = Comparison.load(saved)
    older = Comparison.load(saved)
    for point in [*older.adapter_drop, *older.pruning]:
        point.interval = point.vs_full = None
        point.latency_ms = 1234.5  # kept as recorded
    older.save(saved)
    assert needs_intervals(Comparison.load(saved)) and not needs_intervals(full_run)

    after = rescore_curves(Workspace(home), full_run.options, str(shared_data_dir))
    assert Comparison.load(saved) == after and not needs_intervals(after)
    for new, was in zip(
        [*after.adapter_drop, *after.pruning], [*full_run.adapter_drop, *full_run.pruning], strict=True
    ):
        assert (new.label, new.adapters, new.metric, new.interval, new.vs_full) == (
            was.label,
            was.adapters,
            was.metric,
            was.interval,
            was.vs_full,
        )
        assert new.latency_ms == 1234.5
    assert after.results == full_run.results  # the rows are not touched

    changed = Comparison.load(saved)
    changed.adapter_drop[2].metric += 0.25
    changed.save(saved)
    with pytest.raises(ValueError, match="the checkpoint is not the one measured"):
        rescore_curves(Workspace(home), full_run.options, str(shared_data_dir))


def _copy_of(cb_comparison, tmp_path):
    """A copy of the suite's real CB comparison workspace to change: its root and its ``comparison.json``."""
    import shutil

    home = tmp_path / "ws"
    shutil.copytree(cb_comparison[0], home)
    return home, home / "comparisons" / "cb-s42" / "comparison.json"
