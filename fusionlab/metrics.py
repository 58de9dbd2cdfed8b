"""Classification metrics in plain numpy, with the conventions of GLUE/SuperGLUE (and scikit-learn).

These are written out instead of imported from scikit-learn because scikit-learn is not a declared dependency
(it only arrives transitively), and every metric here is a few lines over a confusion matrix. Undefined
ratios (0/0) count as 0.0, as scikit-learn's ``zero_division`` default does, so a degenerate evaluation set
(a model that never predicts the positive class, say) gives a number instead of a NaN or an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class ScoredTask(Protocol):
    """What the metrics need of a task: the names of the metrics it lists (a ``TaskSpec`` is one; this module
    stays below the task registry, which validates its names against :data:`METRICS`)."""

    metrics: Sequence[str]


ArrayLike = Sequence[int] | np.ndarray


def _as_pair(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if preds.ndim != 1 or gold.ndim != 1:
        raise ValueError(f"predictions and labels must be 1-D; got shapes {preds.shape} and {gold.shape}")
    if len(preds) != len(gold):
        raise ValueError(f"predictions ({len(preds)}) and labels ({len(gold)}) differ in length")
    if len(gold) == 0:
        raise ValueError("cannot compute a metric on zero examples")
    return preds.astype(np.int64), gold.astype(np.int64)


def _safe_div(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def confusion_matrix(predictions: ArrayLike, labels: ArrayLike, num_labels: int) -> np.ndarray:
    """Counts ``[true_label, predicted_label]`` (rows are the gold labels, as in scikit-learn).

    ``num_labels`` is explicit so the matrix keeps its shape when a class is missing from a small sample,
    which is what a dashboard plotting it next to the label names needs.
    """
    preds, gold = _as_pair(predictions, labels)
    bad = (preds < 0) | (preds >= num_labels) | (gold < 0) | (gold >= num_labels)
    if bad.any():
        raise ValueError(f"labels and predictions must lie in [0, {num_labels}); found {int(bad.sum())} outside")
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (gold, preds), 1)
    return matrix


def _full_confusion(preds: np.ndarray, gold: np.ndarray) -> np.ndarray:
    num_labels = int(max(preds.max(), gold.max())) + 1
    return confusion_matrix(preds, gold, num_labels)


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of exact matches."""
    preds, gold = _as_pair(predictions, labels)
    return float((preds == gold).mean())


def f1(predictions: ArrayLike, labels: ArrayLike, positive_label: int = 1) -> float:
    """Binary F1 of ``positive_label`` (MRPC's "equivalent" is label 1, as GLUE scores it)."""
    preds, gold = _as_pair(predictions, labels)
    true_pos = np.sum((preds == positive_label) & (gold == positive_label))
    false_pos = np.sum((preds == positive_label) & (gold != positive_label))
    false_neg = np.sum((preds != positive_label) & (gold == positive_label))
    return _safe_div(2 * true_pos, 2 * true_pos + false_pos + false_neg)


def macro_f1(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in labels or predictions.

    Classes absent from both are left out (scikit-learn's ``average="macro"``), so a small sample that lacks
    CB's rare "neutral" class is not charged a 0 for a class it could not get wrong.
    """
    preds, gold = _as_pair(predictions, labels)
    matrix = _full_confusion(preds, gold)
    present = np.union1d(np.unique(preds), np.unique(gold))
    scores = []
    for cls in present:
        true_pos = matrix[cls, cls]
        scores.append(_safe_div(2 * true_pos, matrix[cls, :].sum() + matrix[:, cls].sum()))
    return float(np.mean(scores))


def matthews_corrcoef(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (multi-class form, Gorodkin 2004); 0.0 when a marginal is constant.

    CoLA is scored with it because accuracy rewards predicting its 70 % majority class.
    """
    preds, gold = _as_pair(predictions, labels)
    matrix = _full_confusion(preds, gold).astype(np.float64)
    total = matrix.sum()
    correct = np.trace(matrix)
    true_counts = matrix.sum(axis=1)
    pred_counts = matrix.sum(axis=0)
    numerator = correct * total - true_counts @ pred_counts
    denominator = np.sqrt(total**2 - pred_counts @ pred_counts) * np.sqrt(total**2 - true_counts @ true_counts)
    return _safe_div(numerator, denominator)


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "matthews_corrcoef": matthews_corrcoef,
}
"""Metric name → function; the names a :class:`~fusionlab.data.tasks.TaskSpec` may list."""

METRIC_LABELS = {
    "accuracy": "accuracy",
    "f1": "F1",
    "macro_f1": "macro F1",
    "matthews_corrcoef": "Matthews correlation (MCC)",
}
"""How people write each metric; every page and chart names metrics through :func:`metric_label`."""


METRIC_RANGES = {"accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "macro_f1": (0.0, 1.0), "matthews_corrcoef": (-1.0, 1.0)}
"""The values each metric can take: a chart's axis spans this (or a part of it), never beyond."""


def metric_range(name: str) -> tuple[float, float] | None:
    """The range of a metric (``eval_`` prefix allowed); ``None`` for an unbounded one such as a loss."""
    return METRIC_RANGES.get(name.removeprefix("eval_"))


EVAL_PREFIX_LABEL = "selection-split"
"""How an in-training evaluation (``eval_<name>``) is named: the trainer measures it on the selection split carved
from train (what chooses the kept step), never on the dev split a run reports (see ``docs/measuring.md``)."""


def metric_label(name: str) -> str:
    """A metric's name as people write it: ``eval_matthews_corrcoef`` → ``selection-split Matthews correlation
    (MCC)``, ``macro_f1`` → ``macro F1``.

    The trainer logs its evaluations during training as ``eval_<name>``, on the selection split (not the dev
    split: a view that shows dev scores writes "dev" itself); an unknown name is shown with spaces for underscores.
    """
    prefix, base = (f"{EVAL_PREFIX_LABEL} ", name.removeprefix("eval_")) if name.startswith("eval_") else ("", name)
    return prefix + METRIC_LABELS.get(base, base.replace("_", " "))


def _class_ids(predictions: ArrayLike) -> np.ndarray:
    """Accept class ids or a ``(n, num_labels)`` array of logits/probabilities (what a Trainer hands over)."""
    preds = np.asarray(predictions)
    return preds.argmax(axis=-1) if preds.ndim == 2 else preds


def compute_metrics(task_spec: ScoredTask, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Every metric the task lists, keyed by name; ``predictions`` may be class ids or logits."""
    preds = _class_ids(predictions)
    return {name: METRICS[name](preds, labels) for name in task_spec.metrics}


def majority_baseline(labels: ArrayLike, task_spec: ScoredTask) -> dict[str, float]:
    """The task's metrics for always predicting the most frequent class of ``labels`` (ties: lowest id).

    Worth showing next to every score: on CoLA or BoolQ a model that learned nothing already reaches
    60-70 % accuracy, and MCC/F1 reveal it (0.0) where accuracy does not.
    """
    gold = np.asarray(labels, dtype=np.int64)
    if gold.ndim != 1 or len(gold) == 0:
        raise ValueError("majority_baseline needs a non-empty 1-D sequence of labels")
    majority = int(np.bincount(gold).argmax())
    return compute_metrics(task_spec, np.full_like(gold, majority), gold)
