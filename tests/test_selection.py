"""Honest selection and uncertainty: the carved selection split, bootstrap and paired intervals, and a real
training run that selects on carved training examples and reports a held-out dev score with its interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fusionlab.data import SELECTION, TASKS, get_task, load_split
from fusionlab.data.loading import selection_keys
from fusionlab.data.splits import selection_rows, selection_split, text_components
from fusionlab.metrics import accuracy, majority_baseline, matthews_corrcoef
from fusionlab.reported import BELOW_MAJORITY, LEARNED, NOT_HELD_OUT, NOT_LEARNED, Reported
from fusionlab.runspec import RunResult
from fusionlab.uncertainty import Difference, Score, mean_interval, paired_difference, score_interval

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason="the offline task data is not at ../shared/data")


# -- the selection split -------------------------------------------------------------------------------------


def test_rows_that_share_any_text_land_on_one_side():
    rows = [
        {"a": "p1", "b": "h1"},
        {"a": "p1", "b": "h2"},  # same premise as row 0
        {"a": "p2", "b": "h2"},  # same hypothesis as row 1: all three are one group
        {"a": "h1", "b": "x"},  # a text that is first here and second in row 0: the same group again
        *({"a": f"q{i}", "b": f"r{i}"} for i in range(40)),
    ]
    groups = text_components(rows, lambda r: (r["a"], r["b"]))
    assert len({groups[i] for i in range(4)}) == 1
    assert len(set(groups)) == 41
    train, selection = selection_split(rows, lambda r: (r["a"], r["b"]))
    texts = lambda part: {t for r in part for t in (r["a"], r["b"])}  # noqa: E731
    assert not texts(train) & texts(selection)
    assert len(train) + len(selection) == len(rows) and selection


def test_selection_size_is_a_tenth_bounded():
    assert selection_rows(250) == 50  # CB: at least 50
    assert selection_rows(2490) == 249
    assert selection_rows(67_349) == 1000
    assert selection_rows(40) == 10  # a tiny user task keeps three quarters to train on


@requires_data
@pytest.mark.parametrize("task", ["rte", "mrpc", "boolq", "sick"])
def test_selection_is_carved_from_train_fixed_and_shares_no_text(task):
    train, selection = load_split(task, "train"), load_split(task, SELECTION)
    keys = selection_keys(get_task(task))
    seen = {k for row in train for k in keys(row)}
    assert not any(k in seen for row in selection for k in keys(row))
    assert list(load_split(task, SELECTION)["idx"]) == list(selection["idx"])  # no run's seed enters it
    assert not set(train["idx"]) & set(selection["idx"])  # rows of the one training pool, each on one side
    wanted = selection_rows(len(train) + len(selection))
    assert wanted <= len(selection) < wanted + 15  # whole groups: at most one group over


# -- intervals ------------------------------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_score_and_narrows_with_more_examples():
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 2, 2000)
    preds = np.where(rng.random(2000) < 0.8, gold, 1 - gold)
    small, large = score_interval(preds[:200], gold[:200], "accuracy"), score_interval(preds, gold, "accuracy")
    assert small.low < small.value < small.high and large.low < large.value < large.high
    assert large.high - large.low < small.high - small.low
    assert large.value == pytest.approx(accuracy(preds, gold))
    assert 0.015 < (large.high - large.low) / 2 < 0.025  # about 1.96 * sqrt(.8 * .2 / 2000) = 0.0175
    assert score_interval(preds, gold, "accuracy") == large  # a fixed seed: reproducible from the predictions
    mcc = score_interval(preds, gold, "matthews_corrcoef")
    assert mcc.value == pytest.approx(matthews_corrcoef(preds, gold)) and mcc.low < mcc.value < mcc.high
    assert Score.from_json(large.to_json()) == large
    assert large.text().endswith("(n=2,000)")


def test_paired_difference_sees_a_small_consistent_gain_that_unpaired_intervals_miss():
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 2, 400)
    base = np.where(rng.random(400) < 0.7, gold, 1 - gold)
    better = base.copy()
    wrong = np.flatnonzero(base != gold)[:20]  # fixes 20 mistakes, breaks nothing: +5 points
    better[wrong] = gold[wrong]
    diff = paired_difference(better, base, gold, "accuracy")
    assert diff.value == pytest.approx(0.05) and diff.verdict() == "better" and not diff.within_noise
    a, b = score_interval(better, gold, "accuracy"), score_interval(base, gold, "accuracy")
    assert a.low < b.high  # the two unpaired intervals overlap: only pairing sees the gain
    noise = paired_difference(base, base, gold, "accuracy")
    assert noise.within_noise and noise.verdict() == "within noise"
    assert paired_difference(base, better, gold, "accuracy").verdict() == "worse"
    assert Difference.from_json(diff.to_json()) == diff
    with pytest.raises(ValueError, match="same examples"):
        paired_difference(base[:10], base, gold, "accuracy")


def test_mean_interval_over_seeds():
    mean, low, high = mean_interval([0.56, 0.60, 0.58])
    assert mean == pytest.approx(0.58) and low < 0.56 and high > 0.60
    assert mean_interval([0.5]) == (0.5, 0.5, 0.5)


def test_reported_says_when_a_checkpoint_was_selected_on_its_own_dev_split():
    old = Reported.from_extra(
        {"main_metric": "accuracy", "metrics": {"accuracy": 0.57}, "own_adapter_metrics": {"accuracy": 0.5}}
    )
    assert old.selection_text() == NOT_HELD_OUT
    assert "no interval" in old.score_text() and "not ranked" in old.difference_text()
    assert old.verdict() is None


# -- a real run ---------------------------------------------------------------------------------------------------


@requires_data
@pytest.mark.slow
def test_training_selects_on_carved_examples_and_reports_dev_with_intervals(tmp_path):
    """The loop's evaluations (which pick the kept step) run on the selection split; the reported number is a
    fresh evaluation on dev, and a fusion's comparison with its own adapter is paired on the same examples."""
    from fusionlab import AdapterConfig, FusionTrainer, ModelConfig, TrainingConfig
    from fusionlab.checkpoint import read_meta

    config = TrainingConfig(max_steps=4, eval_steps=2, max_eval_samples=48, per_device_train_batch_size=8)
    short = ModelConfig(max_length=48)  # what is checked is which examples are used, not how long they are
    trainer = FusionTrainer(short, training_config=config, workspace=tmp_path, data_dir=DATA_DIR)
    adapter = trainer.train_adapter("rte", AdapterConfig(adapter_size=8))
    trainer.train_adapter("cb", AdapterConfig(adapter_size=8))
    fusion = trainer.train_fusion("rte", ["rte", "cb"], name="rte-fused")

    _, selection, dev = trainer._datasets(get_task("rte"), config)
    assert adapter.selection.selected_on == SELECTION and adapter.selection.scored_on == "validation"
    assert adapter.selection.selection_examples == len(selection) == 48
    # the loop's best evaluation is the selection split's, recomputed here from the saved weights
    fresh_selection = trainer.evaluate(adapter.path, max_samples=48, split=SELECTION)
    assert fresh_selection.metrics == adapter.selection_metrics
    assert trainer.evaluate(adapter.path).num_examples == 277  # dev, whole
    assert adapter.score.examples == len(dev) == 48 and adapter.score.low <= adapter.score.value <= adapter.score.high

    result = fusion.to_run_result()
    assert RunResult.from_json(result.to_json()) == result
    assert result.own_adapter is not None and result.own_adapter_difference is not None
    diff = result.own_adapter_difference
    assert diff.value == pytest.approx(result.score - result.own_adapter.value)
    assert diff.examples == 48
    reported = Reported.from_extra(read_meta(fusion.path)["extra"])
    assert reported.difference == diff and reported.selection == result.selection
    assert reported.verdict() in ("better", "worse", "within noise")


def test_every_builtin_task_can_carve_a_selection_split():
    for spec in TASKS.values():
        assert selection_keys(spec)({f: "x" for f in (*spec.text_fields, "passage", "question")})


@requires_data
def test_a_score_is_judged_against_the_majority_class_on_its_interval():
    """On RTE's real dev labels: always answering the majority class is not learning, even though its score
    equals the baseline; a score whose whole interval lies above it is; one wholly below it is worse than that"""
    task = get_task("rte")
    gold = np.array(load_split("rte", "validation", data_dir=DATA_DIR)["label"])
    majority = int(np.bincount(gold).argmax())
    baseline = majority_baseline(gold, task)["accuracy"]

    def judged(predictions) -> Reported:
        return Reported(metric="accuracy", baseline=baseline, interval=score_interval(predictions, gold, "accuracy"))

    assert judged(np.full_like(gold, majority)).learned() == NOT_LEARNED
    assert judged(gold).learned() == LEARNED
    assert judged(1 - gold).learned() == BELOW_MAJORITY  # every answer wrong
    assert "did not learn" in judged(np.full_like(gold, majority)).lines("rte")[0]
    assert "did not learn" not in judged(gold).lines("rte")[0]
    assert Reported(metric="accuracy", value=0.6).learned() is None  # no interval recorded: not judged


@requires_data
def test_transfer_needs_a_gain_beyond_noise_over_an_adapter_that_learned():
    """On RTE's real dev labels: a fusion far above an adapter stuck on the majority class shows no transfer
    (its baseline did not train); far above an adapter that did learn, it does; a gain within noise does not."""
    gold = np.array(load_split("rte", "validation", data_dir=DATA_DIR)["label"])
    baseline = majority_baseline(gold, get_task("rte"))["accuracy"]
    majority = np.full_like(gold, int(np.bincount(gold).argmax()))
    rng = np.random.default_rng(0)
    decent = np.where(rng.random(len(gold)) < 0.2, 1 - gold, gold)  # about 80 % right: learned

    def fusion_over(own, fused) -> Reported:
        return Reported(
            metric="accuracy",
            baseline=baseline,
            interval=score_interval(fused, gold, "accuracy"),
            own_interval=score_interval(own, gold, "accuracy"),
            difference=paired_difference(fused, own, gold, "accuracy"),
        )

    assert fusion_over(majority, gold).verdict() == "better" and not fusion_over(majority, gold).shows_transfer()
    assert fusion_over(decent, gold).shows_transfer()
    assert not fusion_over(decent, decent).shows_transfer()  # no gain at all
    assert (
        fusion_over(majority, gold).own_learned() == NOT_LEARNED and fusion_over(decent, gold).own_learned() == LEARNED
    )
    assert "no transfer" in fusion_over(majority, gold).lines("rte")[1]  # said where the adapter's score is
    assert "no transfer" not in "".join(fusion_over(decent, gold).lines("rte"))
