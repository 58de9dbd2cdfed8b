"""Evaluation on a dev split: task metrics, confusion matrix, per-example predictions and fusion statistics.

The fusion statistics are the data behind the AdapterFusion paper's "which adapters does the target task use"
figure: the mean softmax weight of every adapter in every layer over the real (non-padding) tokens of the dev
set, overall and per gold class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from fusionlab.data.tasks import TaskSpec
from fusionlab.fusion_weights import token_sums
from fusionlab.metrics import compute_metrics, confusion_matrix
from fusionlab.model import FusionModel
from fusionlab.runspec import FusionStats
from fusionlab.uncertainty import Difference, Score, paired_difference, score_interval


@dataclass
class EvaluationResult:
    task: str
    adapter_names: list[str]
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    label_names: list[str]
    predictions: list[dict] = field(default_factory=list)
    fusion_stats: FusionStats | None = None
    num_examples: int = 0
    prediction_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    label_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)
    """Class ids per example in dataset order: what an interval, or a paired comparison, is computed from."""

    def score(self, metric: str) -> Score:
        """``metric`` with its bootstrap interval over these examples (computed on demand: ~0.1 s per 1,000)."""
        return score_interval(self.prediction_ids, self.label_ids, metric)

    def difference(self, other: EvaluationResult, metric: str) -> Difference:
        """This model's ``metric`` minus ``other``'s on the same examples, with its paired interval."""
        if not np.array_equal(self.label_ids, other.label_ids):
            raise ValueError("a paired comparison needs both evaluations on the same examples in the same order")
        return paired_difference(self.prediction_ids, other.prediction_ids, self.label_ids, metric)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "adapter_names": self.adapter_names,
            "metrics": self.metrics,
            "confusion_matrix": self.confusion_matrix,
            "label_names": self.label_names,
            "predictions": self.predictions,
            "fusion_stats": self.fusion_stats.to_dict() if self.fusion_stats else None,
            "num_examples": self.num_examples,
        }

    def confusion_table(self) -> str:
        """The confusion matrix as text, labelled on both axes (rows: gold, columns: predicted)."""
        names = self.label_names
        corner = "gold \\ predicted"
        gold_width = max(len(corner), *(len(n) for n in names))
        widths = [max(6, len(n)) for n in names]
        header = f"{corner:>{gold_width}}  " + " ".join(f"{n:>{w}}" for n, w in zip(names, widths))
        rows = [
            f"{gold:>{gold_width}}  " + " ".join(f"{c:>{w}d}" for c, w in zip(row, widths))
            for gold, row in zip(names, self.confusion_matrix)
        ]
        return "\n".join([header, *rows])


class _WeightAccumulator:
    """Sums of per-token fusion weights per layer and adapter, overall and per gold class."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.total: torch.Tensor | None = None  # [classes, layers, adapters]
        self.tokens = torch.zeros(num_classes, dtype=torch.float64)

    def add(self, weights: tuple[torch.Tensor, ...], mask: torch.Tensor, labels: torch.Tensor) -> None:
        per_example = token_sums(weights)  # [B, L, N]: heads averaged, summed over real tokens
        onehot = torch.nn.functional.one_hot(labels, self.num_classes).to(torch.float64)  # [B, C]
        by_class = torch.einsum("bc,bln->cln", onehot, per_example.double())
        self.total = by_class if self.total is None else self.total + by_class
        self.tokens += onehot.T @ mask.sum(dim=1).double()

    def result(self, adapter_names: list[str], label_names: list[str]) -> FusionStats:
        assert self.total is not None
        mean = self.total.sum(0) / self.tokens.sum().clamp(min=1)
        per_class = {
            label_names[c]: (self.total[c] / self.tokens[c]).tolist()
            for c in range(self.num_classes)
            if self.tokens[c] > 0
        }
        return FusionStats(adapter_names, mean.tolist(), per_class)


def _by_length(dataset) -> list[int]:
    """Row indices sorted by token count (stable), so each batch pads to a similar length: on tasks with long
    and short examples mixed (BoolQ, IMDb) most of a random batch would be padding. Scores do not depend on
    the order; predictions are put back in dataset order."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    return sorted(range(len(lengths)), key=lengths.__getitem__)


@torch.no_grad()
def evaluate_model(
    model: FusionModel,
    dataset,
    task: TaskSpec,
    collator,
    adapter_names: list[str] | None = None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    keep_predictions: bool = True,
    force_fusion: bool = False,
    drop_first_layers: int = 0,
) -> EvaluationResult:
    """Evaluate ``model`` with ``adapter_names`` on a tokenised dataset (columns from ``tokenize_dataset``).

    ``force_fusion`` and ``drop_first_layers`` are passed to the model (a fusion over one adapter; AdapterDrop);
    fusion statistics are gathered only over the full depth, where every layer has weights.
    """
    names, fusion_indices = model.resolve_adapters(adapter_names)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    fused = fusion_indices is not None or force_fusion
    accumulator = _WeightAccumulator(task.num_labels) if fused and not drop_first_layers else None
    all_preds, all_labels, all_probs = [], [], []
    order = _by_length(dataset)
    loader = DataLoader(dataset.select(order), batch_size=batch_size, shuffle=False, collate_fn=collator)
    try:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            out = model(
                **batch,
                adapter_names=names,
                output_fusion_weights=accumulator is not None,
                force_fusion=force_fusion,
                drop_first_layers=drop_first_layers,
            )
            probs = torch.softmax(out.logits.float(), dim=-1)
            all_probs.append(probs.cpu())
            all_preds.append(probs.argmax(-1).cpu())
            all_labels.append(labels.cpu())
            if accumulator is not None:
                accumulator.add(out.fusion_weights, batch["attention_mask"], labels)
    finally:
        model.train(was_training)
    restore = np.argsort(order)  # back to dataset order: row i of the predictions is row i of the dataset
    preds = torch.cat(all_preds).numpy()[restore] if all_preds else np.zeros(0, dtype=int)
    gold = torch.cat(all_labels).numpy()[restore] if all_labels else np.zeros(0, dtype=int)
    probs = torch.cat(all_probs).numpy()[restore] if all_probs else np.zeros((0, task.num_labels))
    predictions = []
    if keep_predictions:
        predictions = [
            {"row": i, "label": int(g), "prediction": int(p), "probabilities": [round(float(x), 5) for x in pr]}
            for i, (g, p, pr) in enumerate(zip(gold, preds, probs))
        ]
    return EvaluationResult(
        task=task.name,
        adapter_names=names,
        metrics=compute_metrics(task, preds, gold) if len(gold) else {},
        confusion_matrix=confusion_matrix(preds, gold, task.num_labels).tolist(),
        label_names=list(task.label_names),
        predictions=predictions,
        fusion_stats=accumulator.result(names, list(task.label_names)) if accumulator and len(gold) else None,
        num_examples=len(gold),
        prediction_ids=preds.astype(np.int64),
        label_ids=gold.astype(np.int64),
    )
