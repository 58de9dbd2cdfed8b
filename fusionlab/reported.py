"""What a saved adapter or fusion reports about itself, read once for every view (CLI, Home, Playground, Runs).

A checkpoint's ``extra`` (written by the trainer) and a pack artifact's card hold the same facts in two shapes:
the main metric on dev with its interval and example count, the majority class, what selected the kept step
and, for a fusion, its own adapter on the same examples with the paired difference. :class:`Reported` is those
facts in one shape, and its ``*_text`` methods are the one way they are written out, so that "within noise"
reads the same everywhere. Artifacts saved before intervals existed report the bare number and say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fusionlab.metrics import metric_label
from fusionlab.runspec import RunResult, SplitUse
from fusionlab.uncertainty import Difference, Score

NOT_HELD_OUT = "selected on the dev split it reports (before honest selection): an optimistic number"

DID_NOT_LEARN = "did not learn"
LEARNED = "learned"
NOT_LEARNED = "not beyond the majority class"
BELOW_MAJORITY = "below the majority class"
"""The three answers of :meth:`Reported.learned`: a score whose whole interval lies above what always answering
the most frequent dev label scores has learned something; one whose interval holds it did not show it did; one
wholly below it learned something wrong."""


def _typed(cls, value):
    try:
        return cls.from_dict(value) if isinstance(value, dict) else None
    except (TypeError, ValueError):
        return None  # a malformed block reads as absent: the bare number is still shown


@dataclass(frozen=True)
class Reported:
    """One artifact's reported dev score and, for a fusion, how it compares with its own adapter."""

    metric: str | None = None
    value: float | None = None
    baseline: float | None = None
    interval: Score | None = None
    own_value: float | None = None
    own_interval: Score | None = None
    difference: Difference | None = None
    selection: SplitUse | None = None

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> Reported:
        """From a checkpoint's ``extra`` block (what :class:`~fusionlab.training.FusionTrainer` saves)."""
        metric = extra.get("main_metric")
        if metric is None:
            return cls()
        return cls(
            metric=metric,
            value=(extra.get("metrics") or {}).get(metric),
            baseline=(extra.get("majority_baseline") or {}).get(metric),
            interval=_typed(Score, extra.get("score_interval")),
            own_value=(extra.get("own_adapter_metrics") or {}).get(metric),
            own_interval=_typed(Score, extra.get("own_adapter")),
            difference=_typed(Difference, extra.get("own_adapter_difference")),
            selection=_typed(SplitUse, extra.get("selection")),
        )

    @classmethod
    def from_result(cls, result: RunResult) -> Reported:
        """From a finished run's :class:`~fusionlab.runspec.RunResult` (what the run store holds)."""
        metric = result.main_metric
        return cls(
            metric=metric,
            value=result.score,
            baseline=result.majority_baseline.get(metric),
            interval=result.score_interval,
            own_value=result.own_adapter.value if result.own_adapter else None,
            own_interval=result.own_adapter,
            difference=result.own_adapter_difference,
            selection=result.selection,
        )

    @classmethod
    def from_card(cls, card) -> Reported:
        """From a pack artifact's :class:`~fusionlab.pack.card.ArtifactCard` (a fresh evaluation of its weights)."""
        metric = card.dev.main_metric
        own = card.own_adapter_dev
        return cls(
            metric=metric,
            value=card.dev.main,
            baseline=card.dev.majority_baseline.get(metric),
            interval=card.dev.interval,
            own_value=own.main if own else None,
            own_interval=own.interval if own else None,
            difference=card.own_adapter_difference,
            selection=card.selection,
        )

    def score_text(self) -> str | None:
        """``0.578 [0.520, 0.635] (n=277)``; the bare number where no interval was recorded."""
        if self.interval is not None:
            return self.interval.text()
        return None if self.value is None else f"{self.value:.3f} (no interval recorded)"

    def own_text(self) -> str | None:
        if self.own_interval is not None:
            return self.own_interval.text()
        return None if self.own_value is None else f"{self.own_value:.3f}"

    def difference_text(self) -> str | None:
        """Fusion minus its own adapter with the paired interval and the verdict; without a paired interval a
        difference is not ranked at all."""
        if self.difference is not None:
            return self.difference.text()
        if self.value is None or self.own_value is None:
            return None
        return f"{self.value - self.own_value:+.3f} (no paired interval recorded: not ranked)"

    def verdict(self) -> str | None:
        """``better``/``worse``/``within noise`` for a fusion against its adapter; ``None`` where not measured."""
        return self.difference.verdict() if self.difference is not None else None

    def learned(self) -> str | None:
        """Whether the score is beyond the majority class, judged on its interval (``None`` where either the
        interval or the baseline was not recorded). An adapter that did not learn makes every comparison built
        on it meaningless, so every view says so next to the score."""
        if self.interval is None or self.baseline is None:
            return None
        if self.interval.low > self.baseline:
            return LEARNED
        return BELOW_MAJORITY if self.interval.high < self.baseline else NOT_LEARNED

    def own_learned(self) -> str | None:
        """:meth:`learned` for a fusion's own adapter (same examples, same majority class)."""
        if self.own_interval is None or self.baseline is None:
            return None
        return Reported(baseline=self.baseline, interval=self.own_interval).learned()

    def learned_text(self) -> str | None:
        """``yes``, or ``no: <why>`` where the interval reaches the majority class (a table cell)."""
        verdict = self.learned()
        if verdict is None:
            return None
        return "yes" if verdict == LEARNED else f"no: {verdict}"

    def shows_transfer(self) -> bool:
        """A fusion beats its own adapter beyond noise and both learned beyond the majority class: a gain over an
        adapter at chance is no evidence that the sources gave anything (the standard: fix a baseline that did
        not train before comparing with it)."""
        return self.verdict() == "better" and self.learned() == LEARNED and self.own_learned() == LEARNED

    def selection_text(self) -> str:
        return self.selection.text() if self.selection is not None else NOT_HELD_OUT

    def selection_short(self) -> str:
        """What chose the step, in a table cell: ``249 carved from train`` or ``dev itself (optimistic)``."""
        if self.selection is None:
            return "dev itself (optimistic)"
        return f"{self.selection.selection_examples:,} carved from train"

    def lines(self, task: str | None = None) -> list[str]:
        """The facts as labelled lines, in the order the CLI and the Runs page print them."""
        if self.metric is None:
            return []
        lines = [f"dev {metric_label(self.metric)}: {self.score_text()}"]
        if self.baseline is not None:
            lines[0] += f"; majority class {self.baseline:.3f}"
            if (learned := self.learned()) not in (None, LEARNED):
                lines[0] += f" ({learned}: {DID_NOT_LEARN})"
        if self.own_value is not None or self.own_interval is not None:
            lines.append(f"its {task or 'own'} adapter alone, same examples: {self.own_text()}")
            if (own := self.own_learned()) not in (None, LEARNED):
                lines[-1] += f" ({own}: {DID_NOT_LEARN}, so a gain over it is no transfer)"
            lines.append(f"fusion − adapter (paired): {self.difference_text()}")
        lines.append(self.selection_text())
        return lines
