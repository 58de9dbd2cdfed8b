"""What a comparison of composition methods records: typed, validated, and a JSON file round trip.

:class:`CompareOptions` says what to compare and with which budget; :class:`MethodResult` is one method's row of
the table; :class:`Comparison` is the whole run (rows, the AdapterDrop and pruning curves, the base encoder's
latency), written to ``comparison.json`` beside the checkpoints it trained, and read back by the CLI, the
dashboard and ``bench/compare_methods.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fusionlab.budgets import COMPARE, COMPARE_LATENCY_REPEATS, COMPARE_SEARCH_EVALUATIONS, MAX_LATENCY_REPEATS
from fusionlab.composition.dropping import CurvePoint
from fusionlab.composition.search import MAX_EVALUATIONS
from fusionlab.config import MAX_NAME_LENGTH, JsonConfig, check_name
from fusionlab.metrics import metric_label
from fusionlab.uncertainty import Difference, Score

MAX_COMPARE_STEPS = 20_000


@dataclass
class CompareOptions(JsonConfig):
    """A comparison: the target task, the frozen source adapters, the methods, and the training budget every
    trained method gets (the same steps, batch size and learning rate, on the same examples)."""

    target: str
    adapters: list[str]
    methods: list[str] = field(default_factory=list)
    """Names from :func:`fusionlab.composition.methods.methods`; empty means all of them."""
    seed: int = 42
    max_steps: int = COMPARE.steps
    learning_rate: float = COMPARE.learning_rate
    batch_size: int = COMPARE.batch_size
    max_length: int = COMPARE.max_length
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    finetune: bool = False
    """Also fine-tune each merged adapter (with its head) for the same steps, as separate rows ``…+ft``."""
    scale: float = 0.3  # task arithmetic
    density: float = 0.2  # TIES
    dare_density: float = 0.5  # DARE
    search_evaluations: int = COMPARE_SEARCH_EVALUATIONS
    search_examples: int = 32
    latency_batch: int = 16
    latency_repeats: int = COMPARE_LATENCY_REPEATS
    curves: bool = True
    """Measure the AdapterDrop and pruning curves on the attention fusion."""

    def validate(self) -> None:
        check_name(self.target, "CompareOptions.target")
        self._artifact_names("adapters")
        if len(self.adapters) < 2:
            raise ValueError("CompareOptions.adapters: name at least two adapters to compose")
        if not isinstance(self.methods, list) or not all(isinstance(m, str) for m in self.methods):
            raise ValueError(f"CompareOptions.methods must be a list of method names, got {self.methods!r}")
        self._bounded_int("max_steps", MAX_COMPARE_STEPS)
        self._bounded_number("learning_rate", 0.0, 1.0)
        self._bounded_int("batch_size", 1024)
        self._bounded_int("max_length", 512)
        self._bounded_int("max_train_samples", 10_000_000, allow_none=True)
        self._bounded_int("max_eval_samples", 10_000_000, allow_none=True)
        self._bounded_number("scale", 0.0, 10.0)
        self._bounded_number("density", 0.0, 1.0)
        self._bounded_number("dare_density", 0.0, 1.0)
        self._bounded_int("search_evaluations", MAX_EVALUATIONS)
        self._bounded_int("search_examples", 4096)
        if self.search_examples < 4:
            raise ValueError("CompareOptions.search_examples must be at least 4 (two per fold)")
        self._bounded_int("latency_batch", 512)
        self._bounded_int("latency_repeats", MAX_LATENCY_REPEATS)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise ValueError(f"CompareOptions.seed must be an integer in [0, 2**32), got {self.seed!r}")
        for name in ("finetune", "curves"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"CompareOptions.{name} must be true or false")

    @property
    def slug(self) -> str:
        """The directory name of this comparison: target and seed (one comparison per pair)."""
        return check_name(f"{self.target}-s{self.seed}"[:MAX_NAME_LENGTH], "comparison")


@dataclass
class MethodResult(JsonConfig):
    """One method's row: its dev score from a fresh evaluation of the saved weights, its costs, and details."""

    method: str
    family: str
    main_metric: str
    value: float
    """The main metric on the fixed dev subset, from the saved checkpoint loaded afresh."""
    metrics: dict[str, float] = field(default_factory=dict)
    in_training_value: float | None = None
    """The same metric as the training loop's final evaluation saw it (None for untrained rows)."""
    inference_params: int = 0
    """Parameters a forward pass adds to the frozen encoder: adapters, fusion layers and head."""
    trained_params: int = 0
    """Parameters this method trained for the target (0 when it trained nothing)."""
    latency_ms: float = 0.0
    train_seconds: float = 0.0
    checkpoint: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    interval: Score | None = None
    """The main metric's 95 % bootstrap interval on the same dev examples (None in comparisons saved before)."""
    vs_adapter: Difference | None = None
    """Paired difference from the target's own adapter on the same examples (None for the adapter's own row)."""

    def validate(self) -> None:
        if isinstance(self.interval, dict):
            self.interval = Score.from_dict(self.interval)
        if isinstance(self.vs_adapter, dict):
            self.vs_adapter = Difference.from_dict(self.vs_adapter)
        for name in ("value", "latency_ms", "train_seconds"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"MethodResult.{name} must be a finite number, got {value!r}")

    @property
    def agrees_with_training(self) -> bool:
        """Whether the fresh evaluation reproduces the training loop's last score (it must: same weights, data)."""
        return self.in_training_value is None or abs(self.in_training_value - self.value) < 1e-6


@dataclass
class Comparison(JsonConfig):
    """A whole comparison, as ``comparison.json`` holds it."""

    options: CompareOptions
    model_name_or_path: str
    dev_examples: int
    majority_baseline: float
    base_latency_ms: float
    results: list[MethodResult] = field(default_factory=list)
    adapter_drop: list[CurvePoint] = field(default_factory=list)
    pruning: list[CurvePoint] = field(default_factory=list)
    device: str = "cpu"

    def validate(self) -> None:
        if isinstance(self.options, dict):
            self.options = CompareOptions.from_dict(self.options)
        self.results = [MethodResult.from_dict(r) if isinstance(r, dict) else r for r in self.results]
        self.adapter_drop = [CurvePoint.from_dict(p) if isinstance(p, dict) else p for p in self.adapter_drop]
        self.pruning = [CurvePoint.from_dict(p) if isinstance(p, dict) else p for p in self.pruning]
        if not self.base_latency_ms > 0:
            raise ValueError(f"Comparison.base_latency_ms must be positive, got {self.base_latency_ms!r}")

    def result(self, method: str) -> MethodResult | None:
        return next((r for r in self.results if r.method == method), None)

    def latency_ratio(self, result: MethodResult | CurvePoint) -> float:
        """A latency relative to the plain encoder's on the same batch (1.0: no extra cost)."""
        return result.latency_ms / self.base_latency_ms

    @property
    def main_metric(self) -> str:
        """The task's main metric, every row's score (``accuracy`` for a comparison that scored nothing)."""
        return self.results[0].main_metric if self.results else "accuracy"

    @property
    def score_label(self) -> str:
        """The score column's name: the task's main metric on the dev set, e.g. ``dev accuracy``."""
        return f"dev {metric_label(self.main_metric)}"

    def gain_over_adapter(self, result: MethodResult) -> float | None:
        """``result``'s score minus the target's own adapter's (None when the comparison has no adapter row)."""
        alone = self.result("adapter")
        return None if alone is None else result.value - alone.value

    def ranked_results(self) -> list[MethodResult]:
        """The methods in the order their evidence allows: those beyond noise better than the adapter (best
        first), then the adapter and every method within noise of it in the run's order (an order of point
        estimates inside the noise would be a ranking the examples do not support), then those beyond noise worse
        (best first)."""

        def key(result: MethodResult) -> tuple[int, float]:
            verdict = result.vs_adapter.verdict() if result.vs_adapter else "within noise"
            if verdict == "within noise":
                return (1, 0.0)  # sorted() is stable: the run's order
            return (0 if verdict == "better" else 2, -result.value)

        return sorted(self.results, key=key)

    def table(self, ranked: bool = False) -> list[dict[str, Any]]:
        """One row per method, values unrounded: the CLI prints it as text, the dashboard as typed columns (the
        one table both show). ``ranked``: in :meth:`ranked_results`' order."""
        results = self.ranked_results() if ranked else self.results
        return [
            {
                "method": r.method,
                "family": r.family,
                self.score_label: r.value,
                "95 % interval": r.interval.bounds_text() if r.interval else None,
                "vs adapter alone": self.gain_over_adapter(r),
                "paired 95 %": r.vs_adapter.bounds_text() if r.vs_adapter else None,
                "paired verdict": r.vs_adapter.verdict() if r.vs_adapter else None,
                "latency vs encoder": self.latency_ratio(r),
                "params at inference": r.inference_params,
                "trained params": r.trained_params,
                "training (s)": r.train_seconds if r.trained_params else None,  # None: it trained nothing
            }
            for r in results
        ]
