"""Metrics: hand-checkable cases, degenerate inputs, and agreement with scikit-learn where it is installed."""

from __future__ import annotations

import numpy as np
import pytest

from fusionlab.data.tasks import get_task
from fusionlab.metrics import (
    METRICS,
    accuracy,
    compute_metrics,
    confusion_matrix,
    f1,
    macro_f1,
    majority_baseline,
    matthews_corrcoef,
)


def test_accuracy_by_hand():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy(np.array([2, 2]), np.array([2, 2])) == 1.0


def test_binary_f1_by_hand():
    # tp = 1, fp = 1, fn = 1  ->  2 / (2 + 1 + 1)
    assert f1([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    # tp = 2, fp = 1, fn = 0  ->  4 / 5
    assert f1([1, 1, 1], [1, 1, 0]) == pytest.approx(0.8)
    # No positive predicted or present: 0/0 counts as 0, not NaN.
    assert f1([0, 0], [0, 0]) == 0.0


def test_macro_f1_by_hand():
    # class 0: F1 1; class 1: tp 1, fn 1 -> 2/3; class 2: tp 1, fp 1 -> 2/3
    assert macro_f1([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # A class absent from both predictions and labels is not averaged in.
    assert macro_f1([0, 2], [0, 2]) == 1.0


def test_matthews_by_hand():
    assert matthews_corrcoef([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    # tp 2, fp 1, fn 0, tn 1 -> (2*1 - 1*0) / sqrt(3 * 2 * 2 * 1)
    assert matthews_corrcoef([1, 1, 1, 0], [1, 1, 0, 0]) == pytest.approx(2 / np.sqrt(12))
    # A constant prediction carries no information: 0, not NaN.
    assert matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0


def test_confusion_matrix_rows_are_gold_labels():
    matrix = confusion_matrix([0, 1, 1, 1], [0, 0, 1, 1], num_labels=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], num_labels=2)


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_bad_inputs_raise(metric):
    with pytest.raises(ValueError, match="differ in length"):
        METRICS[metric]([0, 1], [0])
    with pytest.raises(ValueError, match="zero examples"):
        METRICS[metric]([], [])


def test_compute_metrics_takes_ids_or_logits():
    cola = get_task("cola")
    labels = [1, 0, 1, 1]
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 1.0]])  # argmax: 1, 0, 0, 1
    from_logits = compute_metrics(cola, logits, labels)
    assert set(from_logits) == {"matthews_corrcoef", "accuracy"}
    assert from_logits == compute_metrics(cola, [1, 0, 0, 1], labels)
    assert from_logits["accuracy"] == 0.75


def test_majority_baseline():
    assert majority_baseline([1, 1, 1, 0], get_task("cola")) == {"matthews_corrcoef": 0.0, "accuracy": 0.75}
    mrpc = majority_baseline([1, 1, 0], get_task("mrpc"))
    assert mrpc["f1"] == pytest.approx(0.8)
    # Ties go to the lowest class id.
    assert majority_baseline([0, 1], get_task("sst2")) == {"accuracy": 0.5}


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
def test_agrees_with_sklearn_on_random_inputs():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(40):
        num_labels = 2 if trial % 2 else 3
        size = int(rng.integers(1, 60))
        labels = rng.integers(0, num_labels, size)
        preds = rng.integers(0, num_labels, size)
        assert accuracy(preds, labels) == pytest.approx(sk.accuracy_score(labels, preds))
        assert macro_f1(preds, labels) == pytest.approx(sk.f1_score(labels, preds, average="macro", zero_division=0))
        assert matthews_corrcoef(preds, labels) == pytest.approx(sk.matthews_corrcoef(labels, preds))
        np.testing.assert_array_equal(
            confusion_matrix(preds, labels, num_labels),
            sk.confusion_matrix(labels, preds, labels=list(range(num_labels))),
        )
        if num_labels == 2:
            assert f1(preds, labels) == pytest.approx(sk.f1_score(labels, preds, zero_division=0))


def test_the_confusion_table_labels_both_axes():
    from fusionlab.evaluation import EvaluationResult

    result = EvaluationResult("rte", ["rte"], {}, [[10, 2], [3, 140]], ["entailment", "not_entailment"])
    header, first, second = result.confusion_table().splitlines()
    assert header.split() == ["gold", "\\", "predicted", "entailment", "not_entailment"]
    assert first.split() == ["entailment", "10", "2"] and second.split() == ["not_entailment", "3", "140"]
    assert len({len(header), len(first), len(second)}) == 1  # the columns line up under their labels


def test_metric_ranges_bound_the_scores_and_not_the_loss():
    from fusionlab.metrics import METRICS, metric_range

    assert all(metric_range(name) is not None for name in METRICS)  # every score a task may use has one
    assert metric_range("eval_accuracy") == (0.0, 1.0) and metric_range("matthews_corrcoef") == (-1.0, 1.0)
    assert metric_range("loss") is None and metric_range("eval_loss") is None
