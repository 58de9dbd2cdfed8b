"""The machine-readable card of every artifact in the pack: what it was trained on, how, and how well it does.

A card is written by ``fusionlab pack build`` next to the checkpoint it describes. Its dev metrics come from a
fresh evaluation of the *saved* weights on the full dev split (not from the training loop), so the number on
the card is the number anyone gets with ``fusionlab evaluate``. The card also records every dev prediction,
so its numbers can be recomputed and an install checked against it (``fusionlab pack verify``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from fusionlab.config import JsonConfig, _fail
from fusionlab.runspec import SplitUse
from fusionlab.uncertainty import Difference, Score

if TYPE_CHECKING:
    from fusionlab.evaluation import EvaluationResult

CARD_FILE = "card.json"
KINDS = ("adapter", "fusion")


def encode_predictions(ids: np.ndarray) -> str:
    """Class ids as one digit each: 9,815 MNLI predictions take 9.6 KB on a card (tasks have at most 10 classes
    here; a task with more is refused rather than written ambiguously)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > 9):
        raise ValueError("a card records predictions of tasks with at most 10 classes")
    return (ids + ord("0")).astype(np.uint8).tobytes().decode("ascii")


@dataclass
class DataRecord(JsonConfig):
    """Which files an artifact was trained and scored on, with their SHA-256, so a rebuild can be checked."""

    train_file: str
    train_sha256: str
    validation_file: str
    validation_sha256: str
    train_examples: int
    split_note: str | None = None

    def validate(self) -> None:
        self._positive_int("train_examples")


@dataclass
class DevScore(JsonConfig):
    """Metrics of the saved weights on ``examples`` dev examples (the full split unless ``subset``)."""

    metrics: dict[str, float]
    main_metric: str
    examples: int
    majority_baseline: dict[str, float] = field(default_factory=dict)
    interval: Score | None = None
    """The main metric's 95 % bootstrap interval over these examples (cards built before intervals: none)."""
    predictions: str | None = None
    """Each example's predicted class id in dataset order, one digit per example (cards built before they were
    recorded: none). With the split's labels they give back every number above, and a re-evaluation of the
    saved weights can be checked example by example (:mod:`fusionlab.pack.verify`)."""

    def validate(self) -> None:
        self._positive_int("examples")
        if self.main_metric not in self.metrics:
            _fail("DevScore", "main_metric", f"{self.main_metric!r} is not among the metrics {sorted(self.metrics)}")
        if isinstance(self.interval, dict):
            self.interval = Score.from_dict(self.interval)
        if self.predictions is not None and not (
            isinstance(self.predictions, str)
            and len(self.predictions) == self.examples
            and self.predictions.isascii()
            and self.predictions.isdigit()
        ):
            _fail("DevScore", "predictions", f"must be one digit (a class id) per example, {self.examples:,} in all")

    @classmethod
    def of(cls, result: EvaluationResult, metric: str, baseline: dict[str, float]) -> DevScore:
        """The card's record of a fresh evaluation: its metrics, interval and every prediction."""
        return cls(
            result.metrics,
            metric,
            result.num_examples,
            baseline,
            result.score(metric),
            predictions=encode_predictions(result.prediction_ids),
        )

    def prediction_ids(self) -> np.ndarray | None:
        """The recorded predictions as class ids (``None`` on a card without them)."""
        if self.predictions is None:
            return None
        return np.frombuffer(self.predictions.encode("ascii"), dtype=np.uint8).astype(np.int64) - ord("0")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["interval"] = self.interval.to_dict() if self.interval else None
        return data

    def text(self) -> str:
        """``0.578 [0.520, 0.635] (n=277)``, or the bare score and count where no interval was recorded."""
        return self.interval.text() if self.interval else f"{self.main:.3f} (n={self.examples:,}, no interval)"

    @property
    def main(self) -> float:
        return float(self.metrics[self.main_metric])


@dataclass
class ArtifactCard(JsonConfig):
    """One adapter or fusion of the pack."""

    name: str
    kind: str
    task: str
    recipe: dict[str, Any]
    data: DataRecord
    dev: DevScore
    best_step: int
    steps: int
    in_training_best: dict[str, float]
    in_training_eval_examples: int
    content_hash: str
    adapters: list[str] = field(default_factory=list)
    adapter_hashes: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    wall_seconds: float = 0.0
    curve: list[dict[str, float]] = field(default_factory=list)
    dev_full_precision: dict[str, float] = field(default_factory=dict)
    own_adapter_dev: DevScore | None = None
    """Fusions: the target's own adapter alone, on the same full dev split and truncation (paper, Table 1)."""
    own_adapter_difference: Difference | None = None
    """Fusions: fusion minus its own adapter on the same dev examples, with the paired interval."""
    selection: SplitUse | None = None
    """What chose the kept step. ``None``: a card from before honest selection, whose step was chosen on the
    dev split it reports (an optimistic number; the views say so)."""
    precision: str = "no"
    """What it trained in: ``no`` (full precision), ``bf16`` or ``fp16``."""

    _nested: ClassVar[dict[str, type[JsonConfig]]] = {
        "data": DataRecord,
        "dev": DevScore,
        "own_adapter_dev": DevScore,
        "own_adapter_difference": Difference,
        "selection": SplitUse,
    }

    def validate(self) -> None:
        self._choice("kind", KINDS)
        for name, cls in self._nested.items():
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls.from_dict(getattr(self, name)))
        if self.kind == "fusion":
            self._names("adapters", allow_empty=False)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for name in self._nested:
            value = getattr(self, name)
            data[name] = value.to_dict() if value is not None else None
        return data

    @property
    def honestly_selected(self) -> bool:
        """Its step was chosen on examples carved from training, not on the dev split it is scored on."""
        return self.selection is not None
