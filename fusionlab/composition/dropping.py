"""Making a trained fusion cheaper at inference: AdapterDrop and pruning (Rücklé et al., 2021), measured.

- **AdapterDrop**: the first ``k`` layers run as the plain encoder (no adapters, no fusion); ``k = 0`` is the full
  fusion, exactly. :func:`adapter_drop_curve` scores the dev set and times a forward pass for every ``k``.
- **Pruning**: the adapter the fusion weighs least (mean softmax weight over layers and tokens, read on training
  examples, so that the dev set only scores) is switched off, then the next, down to one adapter (the remaining
  weights renormalised, as the Playground's switches do). :func:`pruning_curve` scores and times each step.

Latency is measured, not estimated: the median wall time of a forward pass over one fixed batch of dev inputs,
after a warm-up, in this process, every configuration timed round-robin with the plain encoder
(:func:`time_interleaved`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import torch

from fusionlab.budgets import COMPARE_LATENCY_REPEATS
from fusionlab.config import JsonConfig
from fusionlab.data import TaskSpec
from fusionlab.evaluation import EvaluationResult, evaluate_model
from fusionlab.model import FusionModel
from fusionlab.uncertainty import Difference, Score


@dataclasses.dataclass
class CurvePoint(JsonConfig):
    """One point of an AdapterDrop or pruning curve: what ran, its dev metric and its latency.

    ``interval`` is the metric's bootstrap interval and ``vs_full`` the point minus the full fusion on the same
    examples, paired: whether cutting the fusion down lost anything beyond noise (both None on points saved
    before they were recorded; ``vs_full`` None on the full fusion itself)."""

    label: str
    adapters: list[str]
    dropped_layers: int
    metric: float
    latency_ms: float
    interval: Score | None = None
    vs_full: Difference | None = None

    def validate(self) -> None:
        if self.dropped_layers < 0:
            raise ValueError(f"CurvePoint.dropped_layers must be >= 0, got {self.dropped_layers}")
        if isinstance(self.interval, dict):
            self.interval = Score.from_dict(self.interval)
        if isinstance(self.vs_full, dict):
            self.vs_full = Difference.from_dict(self.vs_full)

    def text(self) -> str:
        """``drop layer 1 0.567 [0.509, 0.625] (n=277), -0.011 [-0.043, +0.018] (n=277, within noise) vs the full
        fusion``."""
        score = self.interval.text() if self.interval is not None else f"{self.metric:.3f}"
        if self.vs_full is None:
            return f"{self.label} {score}"
        return f"{self.label} {score}, {self.vs_full.text()} vs the full fusion"


def _point(
    label: str, names: list[str], dropped: int, scored: EvaluationResult, full: EvaluationResult | None, metric: str
) -> CurvePoint:
    """A curve point from its evaluation, with its interval and, unless it is the full fusion, the paired
    difference from the full fusion's evaluation (latency filled in later, when every configuration is timed)."""
    vs_full = scored.difference(full, metric) if full is not None else None
    return CurvePoint(label, list(names), dropped, scored.metrics[metric], 0.0, scored.score(metric), vs_full)


Call = Callable[[], object]


def time_interleaved(calls: dict[str, Call], repeats: int = COMPARE_LATENCY_REPEATS) -> dict[str, float]:
    """Median milliseconds of each call, timed round-robin (one call of each per round, after a warm-up round).

    Interleaving puts every configuration under the same conditions (clock speed, cache, other load drift over a
    run), so ratios between them hold even on a busy machine; timing them one after the other did not (adapters
    measured "faster" than the bare encoder).
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for call in calls.values():
            call()
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def base_call(model: FusionModel, batch: dict[str, torch.Tensor]) -> Call:
    """A forward pass of the plain encoder on ``batch`` (no forward context: the layer hooks do nothing)."""
    inputs = _inputs(model, batch)
    return lambda: model.base_model(**inputs)


def model_call(model: FusionModel, batch: dict[str, torch.Tensor], **kwargs) -> Call:
    """A forward pass of the model on ``batch`` with ``kwargs`` (adapter_names, force_fusion, drop_first_layers)."""
    inputs = _inputs(model, batch)
    return lambda: model(**inputs, **kwargs)


def _inputs(model: FusionModel, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keep = {"input_ids", "attention_mask"}
    if model._accepts_token_type_ids:
        keep.add("token_type_ids")
    return {k: v for k, v in batch.items() if k in keep}


def adapter_drop_curve(
    model: FusionModel, dev, task: TaskSpec, collator, batch: dict[str, torch.Tensor]
) -> tuple[list[CurvePoint], dict[str, Call]]:
    """The fusion's dev metric with its first ``k`` layers' adapters dropped, ``k = 0 … L``; and for each point
    the forward pass to time (:func:`time_interleaved` fills ``latency_ms``)."""
    names = _fusion_adapters(model)
    points, calls, full = [], {}, None
    for k in range(model.num_layers + 1):
        scored = evaluate_model(model, dev, task, collator, names, keep_predictions=False, drop_first_layers=k)
        label = "full fusion" if k == 0 else f"drop layers 1–{k}" if k > 1 else "drop layer 1"
        points.append(_point(label, names, k, scored, full, task.main_metric))
        full = scored if full is None else full
        calls[f"drop:{k}"] = model_call(model, batch, adapter_names=names, drop_first_layers=k)
    return points, calls


def mean_adapter_weights(model: FusionModel, probe, task: TaskSpec, collator, names: list[str]) -> dict[str, float]:
    """Each adapter's fusion weight on ``probe``, averaged over layers, tokens and examples."""
    stats = evaluate_model(model, probe, task, collator, names, keep_predictions=False).fusion_stats
    if stats is None:
        raise ValueError("the fusion returned no weights to rank the adapters by")
    layers = torch.tensor(stats.mean)  # [layer, adapter]
    return dict(zip(stats.adapter_names, layers.mean(0).tolist()))


def pruning_curve(
    model: FusionModel, dev, probe, task: TaskSpec, collator, batch: dict[str, torch.Tensor]
) -> tuple[list[CurvePoint], dict[str, Call]]:
    """Switch off the least-weighted adapter one at a time (ranked on ``probe``, scored on ``dev``); with each
    point the forward pass to time."""
    names = _fusion_adapters(model)
    points, calls, full = [], {}, None
    while names:
        single = len(names) == 1
        scored = evaluate_model(model, dev, task, collator, names, keep_predictions=False, force_fusion=single)
        removed = len(_fusion_adapters(model)) - len(names)
        label = "full fusion" if removed == 0 else f"{removed} pruned"
        points.append(_point(label, names, 0, scored, full, task.main_metric))
        full = scored if full is None else full
        calls[f"prune:{removed}"] = model_call(model, batch, adapter_names=list(names), force_fusion=single)
        if single:
            break
        weights = mean_adapter_weights(model, probe, task, collator, names)
        names.remove(min(names, key=weights.__getitem__))
    return points, calls


def _fusion_adapters(model: FusionModel) -> list[str]:
    if model.fusion_config is None:
        raise ValueError("AdapterDrop and pruning need a model with a fusion")
    return list(model.fusion_config.adapter_names)
