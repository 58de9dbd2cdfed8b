"""The machine-readable card of every artifact in the pack: what it was trained on, how, and how well it does.

A card is written by ``fusionlab pack build`` next to the checkpoint it describes. Its dev metrics come from a
fresh evaluation of the *saved* weights on the full dev split (not from the training loop), so the number on
the card is the number anyone gets with ``fusionlab evaluate``; the test suite re-evaluates every shipped
adapter and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from fusionlab.config import JsonConfig, _fail
from fusionlab.runspec import SplitUse
from fusionlab.uncertainty import Difference, Score

CARD_FILE = "card.json"
KINDS = ("adapter", "fusion")


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

    def validate(self) -> None:
        self._positive_int("examples")
        if self.main_metric not in self.metrics:
            _fail("DevScore", "main_metric", f"{self.main_metric!r} is not among the metrics {sorted(self.metrics)}")
        if isinstance(self.interval, dict):
            self.interval = Score.from_dict(self.interval)

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
