"""The machine-readable card of every artifact in the pack: what it was trained on, how, and how well it does.

A card is written by ``fusionlab pack build`` next to the checkpoint it describes. Its dev metrics come from a
fresh evaluation of the *saved* weights on the full dev split (not from the training loop), so the number on
the card is the number anyone gets with ``fusionlab evaluate``; the test suite re-evaluates every shipped
adapter and compares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusionlab.config import JsonConfig, _fail

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

    def validate(self) -> None:
        self._positive_int("examples")
        if self.main_metric not in self.metrics:
            _fail("DevScore", "main_metric", f"{self.main_metric!r} is not among the metrics {sorted(self.metrics)}")

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

    def validate(self) -> None:
        self._choice("kind", KINDS)
        if isinstance(self.data, dict):
            self.data = DataRecord.from_dict(self.data)
        if isinstance(self.dev, dict):
            self.dev = DevScore.from_dict(self.dev)
        if isinstance(self.own_adapter_dev, dict):
            self.own_adapter_dev = DevScore.from_dict(self.own_adapter_dev)
        if self.kind == "fusion":
            self._names("adapters", allow_empty=False)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["data"], data["dev"] = self.data.to_dict(), self.dev.to_dict()
        data["own_adapter_dev"] = self.own_adapter_dev.to_dict() if self.own_adapter_dev else None
        return data
