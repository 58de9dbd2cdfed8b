"""``fusionlab pack verify``: does this install reproduce the pack's cards?

Each card records its dev predictions, one per example. Two checks follow from them, each cheap:

* the card is consistent: its metrics are what its recorded predictions score against the split's labels (no
  model needed, the whole split);
* the weights reproduce it: the saved weights, loaded here, predict the same class on a fixed sample of dev
  examples (a spot check of ``examples`` rows, not the whole split: MNLI's 9,815 pairs take minutes on a CPU).

Another CPU or library version may shift a logit in its last digits and flip an example that sits on the
decision boundary, so a few disagreements are tolerated (:data:`TOLERATED_DISAGREEMENT`); a broken or wrongly
loaded checkpoint disagrees on a large share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionlab.data import load_split
from fusionlab.data.tasks import get_task
from fusionlab.metrics import compute_metrics
from fusionlab.pack.card import ArtifactCard, DevScore
from fusionlab.pack.store import pack_cards
from fusionlab.workspace import Workspace

SPOT_EXAMPLES = 200
TOLERATED_DISAGREEMENT = 0.01
"""At most this share of the spot-checked examples (and at least one) may be predicted otherwise than on the card."""
SPOT_SEED = 0
METRIC_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SpotCheck:
    """One model of one artifact (a fusion's own adapter alone is a second model) checked against its card."""

    artifact: str
    model: str  # the artifact's name, or "<task> adapter alone" for a fusion's own-adapter line
    examples: int
    disagreements: int
    card_consistent: bool
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None and self.card_consistent and self.disagreements <= allowed(self.examples)

    def text(self) -> str:
        if self.problem:
            return f"{self.model}: {self.problem}"
        consistent = (
            "its metrics follow from its predictions"
            if self.card_consistent
            else ("its metrics do NOT follow from its recorded predictions")
        )
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.model}: {self.examples - self.disagreements}/{self.examples} dev predictions as on its card; "
            f"{consistent} — {verdict}"
        )


def allowed(examples: int) -> int:
    """Disagreements tolerated on ``examples`` spot-checked examples."""
    return max(1, math.floor(TOLERATED_DISAGREEMENT * examples))


def spot_rows(size: int, examples: int) -> list[int]:
    """A fixed sample of ``examples`` rows of a split of ``size`` (all of a smaller split), in dataset order."""
    if examples >= size:
        return list(range(size))
    return sorted(np.random.default_rng(SPOT_SEED).choice(size, examples, replace=False).tolist())


def verify_pack(
    root: str | Path,
    data_dir: str | Path | None = None,
    examples: int = SPOT_EXAMPLES,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[SpotCheck]:
    """Check every artifact of the pack at ``root`` (or those named in ``only``) against its card (see the
    module's docstring)."""
    from fusionlab.training import FusionTrainer  # the model stack, only when something is checked

    root = Path(root)
    cards = pack_cards(root)
    unknown = sorted(set(only or ()) - {card.name for card in cards})
    if unknown:
        raise ValueError(f"the pack has no artifact {', '.join(unknown)}; it has {', '.join(c.name for c in cards)}")
    trainer = FusionTrainer(workspace=Workspace(root), data_dir=data_dir)
    checks = []
    for card in cards:
        if only and card.name not in only:
            continue
        for check in _check_artifact(root, card, trainer, data_dir, examples):
            log(check.text())
            checks.append(check)
    return checks


def _check_artifact(root: Path, card: ArtifactCard, trainer, data_dir, examples: int) -> Sequence[SpotCheck]:
    directory = root / f"{card.kind}s" / card.name
    models: list[tuple[str, DevScore, list[str] | None]] = [(card.name, card.dev, None)]
    if card.own_adapter_dev is not None:
        models.append((f"{card.name}: its {card.task} adapter alone", card.own_adapter_dev, [card.task]))
    if card.dev.predictions is None:
        return [SpotCheck(card.name, card.name, 0, 0, False, "its card records no predictions (an older card)")]
    spec = get_task(card.task)
    labels = np.asarray(load_split(spec, "validation", data_dir)["label"], dtype=np.int64)
    checks = []
    for model, score, adapters in models:
        recorded = score.prediction_ids()
        if recorded is None or len(recorded) != len(labels):
            problem = f"its card records {score.examples:,} predictions, the dev split here has {len(labels):,}"
            checks.append(SpotCheck(card.name, model, 0, 0, False, problem))
            continue
        consistent = _consistent(spec, recorded, labels, score)
        rows = spot_rows(len(labels), examples)
        fresh = trainer.evaluate(directory, adapter_names=adapters, rows=rows)
        disagreements = int((fresh.prediction_ids != recorded[rows]).sum())
        checks.append(SpotCheck(card.name, model, len(rows), disagreements, consistent))
    return checks


def _consistent(spec, recorded: np.ndarray, labels: np.ndarray, score: DevScore) -> bool:
    """Whether the card's metrics are what its recorded predictions score on these labels."""
    found = compute_metrics(spec, recorded, labels)
    return all(abs(found[name] - value) <= METRIC_TOLERANCE for name, value in score.metrics.items())
