"""``fusionlab pack verify``: does the pack in use reproduce its cards, here?

Each card records its dev predictions, one per example. Two checks follow from them, each cheap:

* the card is consistent: its metrics are what its recorded predictions score against the split's labels (no
  model needed, the whole split);
* the weights reproduce it: the saved weights, loaded here, predict the same class on a fixed sample of dev
  examples (a spot check of ``examples`` rows, not the whole split: MNLI's 9,815 pairs take minutes on a CPU).

Before either, the artifact's files are checked against the manifest's SHA-256 and the dev file against the one
the card was scored on (its SHA-256 and, for BoolQ, how its dev split was carved): a different file would make
every prediction "disagree" and blame the weights. Another CPU or library version may shift a logit in its last
digits and flip an example on the decision boundary, so a few disagreements are tolerated
(:func:`allowed`); a broken or wrongly loaded checkpoint disagrees on a large share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fusionlab.checkpoint import file_sha256
from fusionlab.data import load_split, resolve_data_dir, split_note
from fusionlab.data.tasks import TaskSpec, get_task
from fusionlab.metrics import compute_metrics
from fusionlab.pack.card import ArtifactCard, DevScore
from fusionlab.pack.store import PackError, read_card, read_manifest, verify_entry
from fusionlab.workspace import Workspace

if TYPE_CHECKING:
    from fusionlab.training import FusionTrainer

SPOT_EXAMPLES = 200
TOLERATED_DISAGREEMENT = 0.01
SPOT_SEED = 0
METRIC_TOLERANCE = 1e-9
NO_PREDICTIONS = "not checkable: its card records no predictions (`fusionlab pack build --out <the pack>` records them)"


@dataclass(frozen=True)
class SpotCheck:
    """One model of one artifact (a fusion's own adapter alone is a second model) checked against its card."""

    artifact: str
    model: str  # the artifact's name, or "<fusion>: its <task> adapter alone"
    examples: int = 0
    disagreements: int = 0
    card_consistent: bool = False
    problem: str | None = None

    @property
    def checked(self) -> bool:
        """Whether the weights were run at all (a missing file or a card without predictions stops it first)."""
        return self.problem is None

    @property
    def passed(self) -> bool:
        return self.checked and self.card_consistent and self.disagreements <= allowed(self.examples)

    def text(self) -> str:
        if self.problem:
            return f"{self.model}: {self.problem}"
        consistent = (
            "its metrics follow from its predictions"
            if self.card_consistent
            else "its metrics do NOT follow from its recorded predictions"
        )
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.model}: {self.examples - self.disagreements}/{self.examples} dev predictions as on its card; "
            f"{consistent} — {verdict}"
        )


def allowed(examples: int) -> int:
    """Disagreements tolerated on ``examples`` spot-checked examples: 1 %, and at least one."""
    return max(1, math.floor(TOLERATED_DISAGREEMENT * examples))


def spot_rows(size: int, examples: int) -> list[int]:
    """A fixed sample of ``examples`` rows of a split of ``size`` (all of a smaller split), in dataset order."""
    if examples >= size:
        return list(range(size))
    return sorted(np.random.default_rng(SPOT_SEED).choice(size, examples, replace=False).tolist())


def summary(checks: Sequence[SpotCheck]) -> str:
    """One line: how many models were checked, passed, failed, and could not be checked."""
    checked = [c for c in checks if c.checked]
    failed = sum(not c.passed for c in checked)
    return (
        f"{len(checked)} of {len(checks)} models checked: {len(checked) - failed} reproduce their card, "
        f"{failed} do not; {len(checks) - len(checked)} not checkable"
    )


def verify_pack(
    root: str | Path,
    data_dir: str | Path | None = None,
    examples: int = SPOT_EXAMPLES,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> list[SpotCheck]:
    """Check every artifact of the pack at ``root`` (or those named in ``only``) against its card (see the
    module's docstring); one :class:`SpotCheck` per model, problems included, never an exception per artifact."""
    from fusionlab.training import FusionTrainer  # the model stack, only when something is checked

    if examples < 1:
        raise ValueError(f"examples must be at least 1, got {examples}")
    root = Path(root)
    entries = read_manifest(root).entries
    unknown = sorted(set(only or ()) - {entry.name for entry in entries})
    if unknown:
        raise ValueError(f"the pack has no artifact {', '.join(unknown)}; it has {', '.join(e.name for e in entries)}")
    verifier = _Verifier(FusionTrainer(workspace=Workspace(root), data_dir=resolve_data_dir(data_dir)), examples)
    checks = []
    for entry in entries:
        if only and entry.name not in only:
            continue
        try:
            verify_entry(root, entry)
            card = read_card(root / entry.relative_dir)
        except (PackError, OSError, ValueError) as err:
            found = [SpotCheck(entry.name, entry.name, problem=f"not checkable: {err}")]
        else:
            found = verifier.artifact(root / entry.relative_dir, entry.name, card)
        for check in found:
            log(check.text())
            checks.append(check)
    return checks


@dataclass(frozen=True)
class _Verifier:
    """What every check shares: the trainer that loads and scores the weights (its data directory), and how many
    examples each model re-predicts."""

    trainer: FusionTrainer
    examples: int

    def artifact(self, directory: Path, name: str, card: ArtifactCard | None) -> list[SpotCheck]:
        """The artifact's model, and a fusion's own adapter alone, each checked against the card."""
        if card is None:
            return [SpotCheck(name, name, problem="not checkable: it has no card")]
        models: list[tuple[str, DevScore, list[str] | None]] = [(name, card.dev, None)]
        if card.own_adapter_dev is not None:
            models.append((f"{name}: its {card.task} adapter alone", card.own_adapter_dev, [card.task]))
        problem = self.dev_problem(card)
        if problem is not None:
            return [SpotCheck(name, model, problem=problem) for model, _, _ in models]
        spec = get_task(card.task)
        labels = np.asarray(load_split(spec, "validation", self.trainer.data_dir)["label"], dtype=np.int64)
        return [self.model(directory, name, spec, model, score, adapters, labels) for model, score, adapters in models]

    def dev_problem(self, card: ArtifactCard) -> str | None:
        """Why the dev split here is not the one the card was scored on, or None."""
        data = self.trainer.data_dir
        if data is None:
            return "not checkable: no task data directory is set"
        path = data / card.data.validation_file
        if not path.is_file():
            return f"not checkable: its dev file {path} is not here"
        if file_sha256(path) != card.data.validation_sha256:
            return f"not checkable: {path} is not the file its card was scored on (another SHA-256)"
        if split_note(card.task, data) != card.data.split_note:
            return f"not checkable: its dev split is carved otherwise here than when its card was written ({data})"
        return None

    def model(
        self,
        directory: Path,
        name: str,
        spec: TaskSpec,
        model: str,
        score: DevScore,
        adapters: list[str] | None,
        labels: np.ndarray,
    ) -> SpotCheck:
        """One model's recorded predictions: consistent with the card's metrics, and re-predicted by its weights."""
        recorded = score.prediction_ids()
        if recorded is None:
            return SpotCheck(name, model, problem=NO_PREDICTIONS)
        if len(recorded) != len(labels):
            problem = f"its card records {len(recorded):,} predictions, the dev split here has {len(labels):,}"
            return SpotCheck(name, model, problem=f"not checkable: {problem}")
        rows = spot_rows(len(labels), self.examples)
        fresh = self.trainer.evaluate(directory, adapter_names=adapters, rows=rows)
        if not np.array_equal(fresh.label_ids, labels[rows]):
            return SpotCheck(name, model, problem="not checkable: the re-scored examples are not the card's")
        disagreements = int((fresh.prediction_ids != recorded[rows]).sum())
        consistent = _consistent(spec, recorded, labels, score)
        return SpotCheck(name, model, len(rows), disagreements, consistent)


def _consistent(spec: TaskSpec, recorded: np.ndarray, labels: np.ndarray, score: DevScore) -> bool:
    """Whether the card's metrics are what its recorded predictions score on these labels."""
    found = compute_metrics(spec, recorded, labels)
    return all(abs(found[name] - value) <= METRIC_TOLERANCE for name, value in score.metrics.items())
