"""Charts that do not mislead (issue #24, items 12-14), on the Streamlit-free logic, without a model: bar lengths
that are the counts, the parameters each "fewer than fine-tuning" counts, latency with its spread, chance lines
and the kept step on the training curves, weight axes that include 0 and 1/N, and Mechanics' random vectors and
value projection said for what they are."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fusionlab.config import FusionConfig
from fusionlab.dashboard import charts, efficiency, mechanics
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.efficiency import LatencyReport, ParameterReport, Timing
from fusionlab.dashboard.run_charts import KEPT_LABEL, RUN_COLORS, curves_chart, trajectory_chart
from fusionlab.dashboard.runs_view import CURVE_COLUMNS, CurveMarks, curve_marks
from fusionlab.data import TASKS
from fusionlab.fusion import build_fusion
from fusionlab.metrics import metric_label
from fusionlab.pack.store import PACK_DIR
from fusionlab.runstore import Run

# The pack's rte-attention, as parameter_report counts it: MiniLM-L6 (22.7 M), five adapters, attention fusion.
PACK_REPORT = ParameterReport(
    base=22_713_216,
    adapters={name: 297_600 for name in ("rte", "mnli", "qnli", "sst2", "boolq")},
    fusion=2_658_816,
    adapter_heads=743_435,
    fusion_head=148_610,
    trainable=2_658_816 + 148_610,
    total=27_752_077,
    num_layers=6,
    method="attention",
)


# -- 12. Efficiency ------------------------------------------------------------------------------------------
def test_parameter_bars_are_linear_from_zero_so_lengths_are_the_counts():
    fig = charts.parameter_chart(PACK_REPORT)
    assert fig.layout.xaxis.type == "linear"
    low, high = fig.layout.xaxis.range
    assert low == 0 and high >= PACK_REPORT.base / 1e6
    bar = fig.data[0]
    lengths = dict(zip(bar.y, bar.x))
    # the encoder's bar is 8.5x the fusion layers' bar, as their counts are (on the old log axis: about 2x)
    assert lengths["encoder (frozen, shared)"] / lengths["fusion layers (trained)"] == pytest.approx(
        22.713216 / 2.658816
    )
    assert "log" not in fig.layout.xaxis.title.text
    assert bar.text[0] == "22.71 M" and len(bar.text) == len(bar.x)  # every bar carries its value


def test_fusion_is_said_to_be_several_adapters_not_one_small_layer():
    text = efficiency.parameter_summary(PACK_REPORT)
    assert "small" not in text
    assert "443 k parameters each, 2.66 M in all" in text
    assert "8.9× one adapter" in text  # 2 658 816 / 297 600
    assert "298 k parameters over its 6 layers" in text


def test_fewer_than_fine_tuning_says_which_parameters_it_counts():
    assert PACK_REPORT.base_over_trained == pytest.approx(22_713_216 / 2_807_426)
    assert PACK_REPORT.base_over_added == pytest.approx(22_713_216 / PACK_REPORT.added)
    text = efficiency.reduction_summary(PACK_REPORT)
    assert "8.1× the 2.81 M that fusion training updates (fusion layers + target head)" in text
    assert "(5.04 M: 5 adapters and their heads" in text and "4.5× as large" in text
    unfrozen = dataclasses.replace(PACK_REPORT, trainable=PACK_REPORT.trainable + 5 * 297_600)
    assert efficiency.trained_parts(unfrozen) == "fusion layers + target head + adapters"


def test_weighted_fusions_tiny_layers_are_a_share_of_an_adapter_not_zero_times():
    weighted = dataclasses.replace(PACK_REPORT, fusion=30, trainable=30 + 148_610, method="weighted")
    assert "0.0% of one adapter" in efficiency.parameter_summary(weighted)
    assert "0.0×" not in efficiency.parameter_summary(weighted)


def _timing(median: float, spread: float) -> Timing:
    return Timing(median, median - spread, median + spread, median - 2 * spread, median + 3 * spread)


def _latency(threads: int = 1, repeats: int = 20) -> LatencyReport:
    return LatencyReport(
        text="The cat sat on the mat. / A cat sat.",
        tokens=128,
        repeats=repeats,
        threads=threads,
        base=_timing(10.0, 0.5),
        single_adapter="rte",
        single=_timing(11.0, 0.5),
        fusion_adapters=("rte", "cb"),
        fusion=(_timing(12.0, 1.0), _timing(13.0, 2.0)),
    )


def test_timing_summarises_the_runs_with_median_quartiles_and_extremes():
    timing = Timing.of([0.010, 0.011, 0.012, 0.013, 0.050])  # seconds; one slow outlier
    assert timing.median == pytest.approx(12.0)
    assert (timing.q1, timing.q3) == (pytest.approx(11.0), pytest.approx(13.0))
    assert (timing.low, timing.high) == (pytest.approx(10.0), pytest.approx(50.0))
    assert timing.text() == "12.0 ms (middle half 11.0–13.0, all 10.0–50.0)"


def test_latency_chart_shows_the_spread_and_the_input_length():
    fig = charts.latency_chart(_latency())
    fused = next(trace for trace in fig.data if trace.name.startswith("fusion"))
    assert list(fused.y) == [12.0, 13.0]
    assert list(fused.error_y.array) == [1.0, 2.0] and list(fused.error_y.arrayminus) == [1.0, 2.0]
    assert "128 tokens" in title_of(fig) and "middle half of 20 runs" in title_of(fig)
    assert len(fig.layout.shapes) == 2  # the encoder's and the adapter's middle half, as bands
    assert fig.layout.shapes[0].y0 == 9.5 and fig.layout.shapes[0].y1 == 10.5
    alone = [trace for trace in fig.data if "alone" in trace.name]
    assert all(len(trace.x) == 2 and trace.x[0] < 1 < trace.x[1] for trace in alone)  # a line even for N = 1


def test_latency_caption_counts_threads_and_runs_in_good_english():
    assert "1 CPU thread," in _latency(threads=1).caption()
    assert "2 CPU threads," in _latency(threads=2).caption()
    assert "1 timed run per configuration" in _latency(repeats=1).caption()
    assert "128 tokens" in _latency().caption()
    rows = _latency().rows()
    assert [row["configuration"] for row in rows] == [
        "encoder alone",
        "rte adapter alone",
        "fusion over 1 adapter (+ rte)",
        "fusion over 2 adapters (+ cb)",
    ]
    assert rows[3]["min"] == 9.0 and rows[3]["max"] == 19.0


def test_latency_lengths_stop_at_the_fusions_max_length():
    assert efficiency.latency_lengths(192) == [32, 64, 128, 192]
    assert efficiency.latency_lengths(64) == [32, 64]
    assert efficiency.default_latency_tokens(192) == 128 and efficiency.default_latency_tokens(64) == 64


def test_size_summary_compares_the_fusion_checkpoint_with_one_adapters():
    sizes = [
        efficiency.CheckpointSize("rte-attention", "fusion", "/f", 5_629_446),
        efficiency.CheckpointSize("rte", "adapter", "/a", 899_201),
        efficiency.CheckpointSize("mnli", "adapter", "/b", 899_948),
    ]
    text = efficiency.size_summary(sizes)
    assert "(5.63 MB: fusion layers and target head) is 6.3× one adapter checkpoint (0.90 MB)" in text
    assert efficiency.size_summary(sizes[1:]) is None


# -- 13. Runs page curves --------------------------------------------------------------------------------------
RUN_A, RUN_B = "#1 rte-attention (finished)", "#2 cb-attention (finished)"


def _curves(values: dict[str, list[float]], steps: list[int]) -> pd.DataFrame:
    rows = [
        {"run_id": i, "run": run, "step": step, "value": value}
        for i, (run, series) in enumerate(values.items())
        for step, value in zip(steps, series)
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _chance_traces(fig):
    return [trace for trace in fig.data if trace.meta == "chance"]


def _kept_traces(fig):
    return [trace for trace in fig.data if trace.meta == "kept"]


def test_the_loss_is_drawn_from_zero_with_the_chance_line_at_ln_labels():
    loss = _curves({RUN_A: [0.74, 0.70, 0.68, 0.71]}, [10, 20, 30, 40])
    marks = [CurveMarks(RUN_A, num_labels=2, best_step=30)]
    fig = curves_chart(loss, "loss", "Training loss", marks)
    [chance] = _chance_traces(fig)
    assert list(chance.y) == [pytest.approx(math.log(2))] * 2
    assert chance.name == "chance: ln 2 = 0.693"
    low, high = fig.layout.yaxis.range
    assert low == 0 and high >= 0.74  # not 0.68-0.74: a wobble around ln 2 looks like one
    [kept] = _kept_traces(fig)
    assert list(kept.x) == [30, 30] and list(kept.y) == [0, high]  # across the whole plot
    assert kept.name == f"{KEPT_LABEL}: step 30" == "kept (best on the selection split): step 30"
    assert curves_chart(loss, "loss").layout.yaxis.range[0] == 0  # from 0 without marks too


def test_a_score_gets_its_majority_baseline_and_its_whole_range():
    accuracy = _curves({RUN_A: [0.50, 0.56, 0.53]}, [5, 10, 15])
    marks = [CurveMarks(RUN_A, num_labels=2, majority={"accuracy": 0.527}, best_step=10)]
    fig = curves_chart(accuracy, "eval_accuracy", marks=marks)
    [chance] = _chance_traces(fig)
    assert list(chance.y) == [0.527, 0.527] and chance.name == "majority class (dev split): 0.527"
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= 1
    assert [trace.x[0] for trace in _kept_traces(fig)] == [10]
    assert title_of(fig) == "Selection-split accuracy by training step"  # measured on the selection split
    assert fig.layout.yaxis.title.text == "selection-split accuracy"


def test_runs_with_different_chance_levels_get_one_line_each_in_their_colour():
    accuracy = _curves({RUN_A: [0.5, 0.6], RUN_B: [0.4, 0.7]}, [1, 2])
    marks = [
        CurveMarks(RUN_A, 2, {"accuracy": 0.527}, best_step=2),
        CurveMarks(RUN_B, 3, {"accuracy": 0.5}, best_step=1),
    ]
    fig = curves_chart(accuracy, "eval_accuracy", marks=marks)
    chance = _chance_traces(fig)
    assert [(trace.y[0], trace.line.color) for trace in chance] == [(0.527, RUN_COLORS[0]), (0.5, RUN_COLORS[1])]
    assert [trace.name.split(" ")[0] for trace in chance] == ["#1", "#2"]
    kept = [(trace.x[0], trace.line.color, trace.name.split(" ")[0]) for trace in _kept_traces(fig)]
    assert kept == [(2, RUN_COLORS[0], "#1"), (1, RUN_COLORS[1], "#2")]
    loss = curves_chart(_curves({RUN_A: [1.2, 0.9], RUN_B: [1.0, 0.8]}, [1, 2]), "loss", marks=marks)
    assert sorted(trace.y[0] for trace in _chance_traces(loss)) == [
        pytest.approx(math.log(2)),
        pytest.approx(math.log(3)),
    ]
    assert loss.layout.yaxis.range[1] >= math.log(3)  # chance is on the chart even above every loss
    same = [dataclasses.replace(marks[1], num_labels=2)]
    assert len(_chance_traces(curves_chart(_curves({RUN_B: [0.9]}, [1]), "loss", marks=[marks[0], *same]))) == 1


def test_marks_of_runs_not_drawn_and_unknown_levels_draw_nothing():
    accuracy = _curves({RUN_A: [0.5, 0.6]}, [1, 2])
    fig = curves_chart(accuracy, "eval_accuracy", marks=[CurveMarks(RUN_B, 2, {"accuracy": 0.5}, best_step=1)])
    assert not _chance_traces(fig) and not _kept_traces(fig)
    assert not _chance_traces(curves_chart(accuracy, "eval_accuracy", marks=[CurveMarks(RUN_A)]))
    assert CurveMarks(RUN_A).chance("loss") is None and CurveMarks(RUN_A, 2).chance("grad_norm") is None


def _run(**changes) -> Run:
    run = Run(
        id=7,
        kind="train_fusion",
        name="cb-attention",
        config={"target_task": "cb", "adapters": ["cb", "rte"]},
        status="finished",
        created_at=0.0,
        started_at=1.0,
        ended_at=2.0,
        worker_pid=None,
        device=None,
        progress=1.0,
        message=None,
        error=None,
        final_metrics={
            "metrics": {"accuracy": 0.6, "macro_f1": 0.4},
            "main_metric": "accuracy",
            "majority_baseline": {"accuracy": 0.5, "macro_f1": 0.22},
            "best_step": 40,
            "label_names": ["entailment", "contradiction", "neutral"],
        },
        artifacts={"kind": "fusion", "name": "cb-attention", "checkpoint": "/nowhere"},
        cancel_requested=False,
    )
    return dataclasses.replace(run, **changes)


def test_curve_marks_read_what_the_run_recorded():
    marks = curve_marks(_run())
    assert marks == CurveMarks("#7 cb-attention (finished)", 3, {"accuracy": 0.5, "macro_f1": 0.22}, 40)
    assert marks.chance("loss") == pytest.approx(math.log(3)) and marks.chance("eval_macro_f1") == 0.22
    running = curve_marks(_run(status="running", final_metrics=None))
    assert running.best_step is None and not running.majority
    assert running.num_labels == TASKS["cb"].num_labels == 3  # the built-in task says, before any result
    custom = _run(
        kind="train_adapter",
        config={"task": "mine", "adapter_config": {"label_names": ["a", "b", "c", "d"]}},
        final_metrics=None,
    )
    assert curve_marks(custom).num_labels == 4


def test_in_training_evaluations_are_named_for_the_selection_split():
    assert metric_label("eval_accuracy") == "selection-split accuracy"
    assert metric_label("eval_matthews_corrcoef") == "selection-split Matthews correlation (MCC)"
    assert metric_label("accuracy") == "accuracy"  # a dev score's view writes "dev" itself


def test_the_weight_trajectory_spans_zero_to_one_with_the_even_share_marked():
    steps = [0, 10, 20]
    rows = [
        {"step": step, "adapter": name, "weight": weight}
        for step, pair in zip(steps, [(0.2, 0.8), (0.18, 0.82), (0.24, 0.76)])
        for name, weight in zip(("rte", "cb"), pair)
    ]
    five = pd.DataFrame(
        [{"step": s, "adapter": f"a{i}", "weight": 0.2 + 0.01 * i * (s > 0)} for s in steps for i in range(5)]
    )
    fig = trajectory_chart(five, "Moved")
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= 1  # not 0.16-0.24
    ticks = dict(zip(fig.layout.yaxis.tickvals, fig.layout.yaxis.ticktext))
    assert ticks[0.2] == "1/5" and 0 in ticks and 1 in ticks
    assert fig.layout.shapes[0].y0 == pytest.approx(0.2)
    assert trajectory_chart(pd.DataFrame(rows), "two").layout.yaxis.range[0] == 0


# -- 14. Mechanics ---------------------------------------------------------------------------------------------
def test_random_vectors_are_not_named_after_tasks():
    names = mechanics.random_outputs(6).names
    assert names == ("random A", "random B", "random C", "random D", "random E", "random F")
    assert not set(names) & set(TASKS)
    assert len({charts.adapter_color(name) for name in names}) == 6  # still told apart by colour


def test_the_similarity_title_ends_with_its_noun():
    result = mechanics.fuse(mechanics.random_outputs(3), "attention")
    assert (
        title_of(charts.mechanics_similarity_chart(result)) == "How close the fused output is to each adapter's output"
    )
    changed = dataclasses.replace(result, compared="change to the hidden state")
    assert title_of(charts.mechanics_similarity_chart(changed)).endswith("to each adapter's change")


def test_a_fresh_value_projection_is_the_identity_as_the_note_says():
    outputs = mechanics.random_outputs(3, seed=1)
    result = mechanics.fuse(outputs, "attention", num_heads=1)
    assert not result.trained_layer and mechanics.has_value_projection("attention")
    note = mechanics.scale_note(result)
    assert "value projection (a learned 384×384 matrix and a bias)" in note and "identity" in note
    weighted_sum = (result.weights[:, 0, :, None] * outputs.outputs.numpy()).sum(axis=1)  # one head: [T, H]
    assert result.fused.norm == pytest.approx(float(np.linalg.norm(weighted_sum, axis=-1).mean()), rel=1e-4)


def test_a_trained_value_projection_that_scales_is_named_as_the_reason():
    outputs = mechanics.random_outputs(3, hidden_size=32, seed=2)
    config = FusionConfig(fusion_method="attention", adapter_names=["a", "b", "c"])
    layer = build_fusion(config, 32)
    with torch.no_grad():
        layer.value.weight.mul_(4.0)  # a value projection that learned to scale by 4
    trained = dataclasses.replace(outputs, fusion_config=config, fusion_state=layer.state_dict())
    result = mechanics.fuse(trained, "attention")
    assert result.trained_layer
    longest = max(a.norm for a in result.adapters)
    assert result.fused.norm > 1.05 * longest
    note = mechanics.scale_note(result)
    assert "trained with the fusion: it can scale and turn the sum" in note
    assert f"{result.fused.norm / longest:.1f}× as long as the longest adapter's" in note


def test_weighted_fusion_is_said_to_have_no_value_projection():
    result = mechanics.fuse(mechanics.random_outputs(3), "weighted")
    assert not mechanics.has_value_projection("weighted")
    assert "no value projection" in mechanics.scale_note(result)
    per_token_longest = np.linalg.norm(mechanics.random_outputs(3).outputs.numpy(), axis=-1).max(axis=1)
    assert result.fused.norm <= per_token_longest.mean() + 1e-6  # what the note promises, token by token


@pytest.mark.skipif(not (PACK_DIR / "pack.json").is_file(), reason="the pack is not built")
def test_the_home_diagram_draws_the_fusion_the_playground_opens_on_in_the_dashboard_colours(tmp_path, monkeypatch):
    """Home's static diagram names four adapters: those of the pack's fusion the Playground opens on (one that
    shows transfer), each in its colour on every chart, so the picture never shows an adapter that did not learn."""
    import re
    from pathlib import Path

    from fusionlab.checkpoint import read_meta
    from fusionlab.dashboard.colors import adapter_color
    from fusionlab.dashboard.inference import preferred_fusion
    from fusionlab.pack.store import ready_workspace

    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))
    workspace = ready_workspace(tmp_path / "ws")
    fusion = preferred_fusion(workspace, workspace.list_fusions())
    adapters = read_meta(workspace.fusion_dir(fusion))["fusion_config"]["adapter_names"]
    svg = (Path(__file__).resolve().parents[1] / "assets" / "adapter_fusion.svg").read_text(encoding="utf-8")
    drawn = re.findall(r'fill="(#[0-9A-Fa-f]{6})"/>\s*<text[^>]*>adapter (\w+)</text>', svg)
    assert [name for _, name in drawn] == adapters, (fusion, drawn)
    assert all(color.upper() == adapter_color(name).upper() for color, name in drawn)
