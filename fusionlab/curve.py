"""The notebook's sentiment story as a learning curve: does fusion help most when the target has little data?

For each training-set size ``k`` and each seed (a different random subset of ``k`` examples), the target's own
adapter is trained on those ``k`` examples, then a fusion over it and the source adapters (the pack's, trained
once, as in the paper) is trained on the same examples with the same budget. Both are selected on the selection
split carved from train and scored afresh on the same dev examples: each score with its bootstrap interval, the
fusion's gain with a *paired* interval. The AdapterFusion paper's claim, "fusion helps most when the target has
little data", is then shown or refuted on this encoder, size by size.

The run is resumable: every finished point is written to the curve's JSON at once, and a rerun skips the
points already there (and reuses the checkpoints already trained).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fusionlab.budgets import NO_LIMIT, resolve_budget
from fusionlab.config import JsonConfig, _fail, check_name
from fusionlab.runspec import Budget
from fusionlab.schema import stamp, upgrade
from fusionlab.uncertainty import Difference, Score

CURVES_DIR = "curves"
"""Where a workspace keeps its learning curves (``<workspace>/curves/<target>-<method>.json``); the dashboard
reads them there and in the pack."""
MAX_SIZE = 100_000
MAX_POINTS = 60
"""At most this many (size, seed) points per curve: each trains two models."""


@dataclass
class CurvePlan(JsonConfig):
    """What a learning curve measures: the target, the source adapters fused with its own, the training-set sizes
    and seeds, and one budget for every point (about ``steps`` optimisation steps whatever the size, stopped early
    on the selection split)."""

    target: str = "imdb"
    sources: list[str] = field(default_factory=lambda: ["sst2", "mnli", "qnli"])
    """The pack's ``imdb-attention`` sources, so that the curve's k = 100 is that fusion's design on other subsets."""
    sizes: list[int] = field(default_factory=lambda: [50, 100, 250, 500, 1000])
    seeds: list[int] = field(default_factory=lambda: [1, 2])
    method: str = "attention"
    steps: int = 300
    batch_size: int = 16
    max_length: int = 128
    max_eval_samples: int | None = 500
    """Selection examples each evaluation during training reads (dev is always scored whole)."""
    patience: int = 6

    def validate(self) -> None:
        check_name(self.target, "CurvePlan.target")
        self._artifact_names("sources")
        for name in ("sizes", "seeds"):
            values = getattr(self, name)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                _fail("CurvePlan", name, f"must be a non-empty list of integers, got {values!r}")
        if not all(1 <= k <= MAX_SIZE for k in self.sizes):
            _fail("CurvePlan", "sizes", f"must each be between 1 and {MAX_SIZE:,}, got {self.sizes!r}")
        if len(self.sizes) * len(self.seeds) > MAX_POINTS:
            _fail("CurvePlan", "sizes", f"sizes × seeds must be at most {MAX_POINTS} points")
        for name in ("steps", "batch_size", "max_length", "patience"):
            self._positive_int(name)
        self._positive_int("max_eval_samples", allow_none=True)

    def budget(self, size: int, seed: int) -> Budget:
        """One point's budget, for the adapter and the fusion alike: the target's recipe profile with ``size``
        examples, as many epochs as make about :attr:`steps` steps (at least one), an evaluation every half epoch
        (at least 10 steps apart, at least four in the run) and early stopping after :attr:`patience` evaluations
        without a new best. ``seed`` also draws the ``size`` examples: each seed is another subset."""
        per_epoch = math.ceil(size / self.batch_size)
        epochs = max(1.0, self.steps / per_epoch)
        every = max(1, min(max(10, per_epoch // 2), math.ceil(self.steps / 4)))
        return resolve_budget(
            self.target,
            "adapter",
            max_train_samples=size,
            epochs=epochs,
            batch_size=self.batch_size,
            max_length=self.max_length,
            eval_steps=every,
            early_stopping_patience=self.patience,
            max_eval_samples=NO_LIMIT if self.max_eval_samples is None else self.max_eval_samples,
            snapshot_steps=NO_LIMIT,
            seed=seed,
        )

    def adapter_name(self, size: int, seed: int) -> str:
        return f"{self.target}-k{size}-s{seed}"

    def fusion_name(self, size: int, seed: int) -> str:
        return f"{self.adapter_name(size, seed)}-{self.method}"


@dataclass
class CurvePoint(JsonConfig):
    """One size and seed: the adapter alone and the fusion on the same dev examples, and their paired difference."""

    size: int
    seed: int
    adapter: Score
    fusion: Score
    difference: Difference
    """Fusion minus adapter, paired on the same dev examples."""
    adapter_steps: int = 0
    fusion_steps: int = 0
    seconds: float = 0.0

    _nested: ClassVar[dict[str, type[JsonConfig]]] = {"adapter": Score, "fusion": Score, "difference": Difference}

    def validate(self) -> None:
        for name, cls in self._nested.items():
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls.from_dict(getattr(self, name)))


@dataclass
class SizeSummary:
    """The seeds of one size together: mean scores and mean paired gain, and how many seeds' gains are beyond
    noise in either direction (a seed's paired interval that excludes 0)."""

    size: int
    seeds: int
    adapter: float
    fusion: float
    gain: float
    better: int
    worse: int

    def verdict(self) -> str:
        if self.better == self.seeds:
            return "fusion better in every seed"
        if self.worse == self.seeds:
            return "fusion worse in every seed"
        return "within noise" if not (self.better or self.worse) else "mixed"


@dataclass
class LearningCurve(JsonConfig):
    """A whole curve, as its JSON file holds it (schema-stamped)."""

    plan: CurvePlan
    points: list[CurvePoint] = field(default_factory=list)
    main_metric: str = "accuracy"
    device: str = ""

    def validate(self) -> None:
        if isinstance(self.plan, dict):
            self.plan = CurvePlan.from_dict(self.plan)
        self.points = [CurvePoint.from_dict(p) if isinstance(p, dict) else p for p in self.points]

    def to_dict(self) -> dict[str, Any]:
        return stamp(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearningCurve:
        return super().from_dict(upgrade(data, "a stored LearningCurve"))

    def pending(self) -> list[tuple[int, int]]:
        """The plan's ``(size, seed)`` points not measured yet (a curve stopped part-way; a rerun resumes them)."""
        return [(k, s) for k in self.plan.sizes for s in self.plan.seeds if self.point(k, s) is None]

    def point(self, size: int, seed: int) -> CurvePoint | None:
        return next((p for p in self.points if (p.size, p.seed) == (size, seed)), None)

    def points_at(self, size: int) -> list[CurvePoint]:
        """Every seed's point at ``size``, in seed order."""
        return sorted((p for p in self.points if p.size == size), key=lambda p: p.seed)

    def summary(self) -> list[SizeSummary]:
        """One row per size measured, smallest first."""
        rows = []
        for size in sorted({p.size for p in self.points}):
            points = self.points_at(size)
            rows.append(
                SizeSummary(
                    size=size,
                    seeds=len(points),
                    adapter=statistics.fmean(p.adapter.value for p in points),
                    fusion=statistics.fmean(p.fusion.value for p in points),
                    gain=statistics.fmean(p.difference.value for p in points),
                    better=sum(p.difference.low > 0 for p in points),
                    worse=sum(p.difference.high < 0 for p in points),
                )
            )
        return rows


def run_curve(
    plan: CurvePlan,
    workspace,
    data_dir: str | None,
    out: str | Path,
    log: Callable[[str], None] = print,
) -> LearningCurve:
    """Measure every (size, seed) point of ``plan`` not yet in ``out`` (resuming a curve), writing ``out`` after
    each; the source adapters must be in ``workspace`` (the pack's are installed by ``ready_workspace``)."""
    from fusionlab.devices import describe_device
    from fusionlab.training import FusionTrainer

    out = Path(out)
    curve = LearningCurve.load(out) if out.is_file() else LearningCurve(plan, device=describe_device())
    if curve.plan != plan:
        raise ValueError(f"{out} holds a curve with another plan; write this one to another file")
    missing = [name for name in plan.sources if name not in workspace.list_adapters()]
    if missing:
        raise ValueError(f"source adapters {', '.join(missing)} are not in {workspace.root}")
    trainer = FusionTrainer(workspace=workspace, data_dir=data_dir)
    for size in plan.sizes:
        for seed in plan.seeds:
            if curve.point(size, seed) is not None:
                continue
            log(f"k={size} seed={seed}: training the adapter, then the fusion")
            point = _measure(plan, trainer, size, seed)
            curve.main_metric = point.adapter.metric
            curve.points.append(point)
            out.parent.mkdir(parents=True, exist_ok=True)
            curve.save(out)
            log(f"k={size} seed={seed}: adapter {point.adapter.text()}, fusion {point.fusion.text()}, "
                f"gain {point.difference.text()}")  # fmt: skip
    return curve


def _measure(plan: CurvePlan, trainer, size: int, seed: int) -> CurvePoint:
    start = time.perf_counter()
    budget = plan.budget(size, seed)
    trainer.model_config = budget.model_config()
    config = budget.training_config()
    adapter = trainer.train_adapter(plan.target, name=plan.adapter_name(size, seed), training_config=config)
    fusion = trainer.train_fusion(
        plan.target,
        [adapter.name, *plan.sources],
        method=plan.method,
        name=plan.fusion_name(size, seed),
        training_config=config,
    )
    fused = trainer.evaluate(fusion.path)  # the saved weights, loaded back, on the whole dev split
    alone = trainer.evaluate(adapter.path)
    metric = _main_metric(plan.target)
    return CurvePoint(
        size=size,
        seed=seed,
        adapter=alone.score(metric),
        fusion=fused.score(metric),
        difference=fused.difference(alone, metric),
        adapter_steps=adapter.steps,
        fusion_steps=fusion.steps,
        seconds=round(time.perf_counter() - start, 1),
    )


def _main_metric(task: str) -> str:
    from fusionlab.data.tasks import get_task

    return get_task(task).main_metric


def curve_path(workspace, plan: CurvePlan) -> Path:
    """Where ``fusionlab curve`` writes ``plan``'s curve by default (and the dashboard looks for it)."""
    return workspace.root / CURVES_DIR / f"{plan.target}-{plan.method}.json"


def format_summary(curve: LearningCurve) -> str:
    """The curve as the CLI prints it: one line per size, mean over seeds, each seed's paired interval (seeds
    train on different subsets, so each has its own) and the verdict over them."""
    from fusionlab.text_table import align_columns

    header = ["k", "seeds", f"adapter {curve.main_metric}", "fusion", "gain (mean)", "paired 95 %, per seed", "verdict"]
    rows = [
        [
            f"{r.size:,}",
            str(r.seeds),
            f"{r.adapter:.3f}",
            f"{r.fusion:.3f}",
            f"{r.gain:+.3f}",
            seed_intervals(curve, r.size),
            r.verdict(),
        ]
        for r in curve.summary()
    ]
    return "\n".join(align_columns(header, rows, rule=True)) if rows else "(no point measured yet)"


def seed_intervals(curve: LearningCurve, size: int) -> str:
    """Each seed's paired interval at ``size``, in seed order: ``[+0.010, +0.105]; [-0.020, +0.060]`` (the CLI's
    table and Home's caption: a mean gain is read with the intervals that judge it)."""
    return "; ".join(p.difference.bounds_text() for p in curve.points_at(size))
