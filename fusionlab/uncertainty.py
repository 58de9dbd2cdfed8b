"""How sure a score is: bootstrap intervals over the scored examples, and paired intervals for a difference.

A dev score is a mean over a few hundred examples (RTE: 277, CB: 56), so two models a point apart are often
indistinguishable. Every reported score therefore carries a 95 % percentile-bootstrap interval over its dev
examples, and every "fusion vs its own adapter" difference a *paired* one: both models' predictions on the same
resampled examples, so the examples' difficulty cancels out. A difference whose paired interval includes 0 is
"within noise" and is never ranked as a win (:attr:`Difference.within_noise`).

The resampling seed is fixed, so an interval is reproducible from the predictions alone. Metrics are any of
:data:`fusionlab.metrics.METRICS` (F1 and MCC are not means of per-example scores, so each resample recomputes
the metric rather than averaging).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fusionlab.config import JsonConfig, _fail
from fusionlab.metrics import METRICS, ArrayLike

CONFIDENCE = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
"""Fixed: an interval must follow from the predictions alone, not from when it was computed."""


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _metric(name: str):
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]


@dataclass
class _Interval(JsonConfig):
    """A value of ``metric`` on ``examples`` examples with its ``confidence`` interval ``[low, high]``."""

    metric: str
    value: float
    low: float
    high: float
    examples: int
    confidence: float = CONFIDENCE

    def validate(self) -> None:
        self._positive_int("examples")

    def bounds_text(self, digits: int = 3) -> str:
        """``[0.520, 0.635]``: the interval alone, for a table whose other column holds the value."""
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass
class Score(_Interval):
    """One metric on ``examples`` examples with its bootstrap interval ``[low, high]``."""

    def validate(self) -> None:
        super().validate()
        if not self.low <= self.value <= self.high:
            _fail("Score", "value", f"{self.value} lies outside its interval [{self.low}, {self.high}]")

    def text(self, digits: int = 3) -> str:
        """``0.578 [0.520, 0.635] (n=277)``: the form every page and the CLI print."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] (n={self.examples:,})"


@dataclass
class Difference(_Interval):
    """``a - b`` on the same ``examples`` examples, with its paired bootstrap interval."""

    @property
    def within_noise(self) -> bool:
        """The paired interval includes 0: no evidence either way, whatever the sign of ``value``."""
        return self.low <= 0.0 <= self.high

    def verdict(self) -> str:
        """``better``, ``worse`` or ``within noise`` (the word the CLI and the dashboard show)."""
        if self.within_noise:
            return "within noise"
        return "better" if self.value > 0 else "worse"

    def bounds_text(self, digits: int = 3) -> str:
        """``[-0.036, +0.079]``: signed, so that an interval across 0 reads as one."""
        return f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def text(self, digits: int = 3) -> str:
        """``+0.083 [+0.040, +0.126] (n=277, better)``."""
        return f"{self.value:+.{digits}f} {self.bounds_text(digits)} (n={self.examples:,}, {self.verdict()})"


def score_interval(
    predictions: ArrayLike,
    labels: ArrayLike,
    metric: str,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Score:
    """``metric`` of class-id ``predictions`` with its percentile-bootstrap interval over the examples."""
    fn = _metric(metric)
    preds, gold = np.asarray(predictions), np.asarray(labels)
    value = fn(preds, gold)
    samples = np.array([fn(preds[i], gold[i]) for i in _resample_indices(len(gold), resamples, seed)])
    low, high = _percentiles(samples, confidence)
    return Score(metric, value, min(low, value), max(high, value), len(gold), confidence)


def paired_difference(
    predictions_a: ArrayLike,
    predictions_b: ArrayLike,
    labels: ArrayLike,
    metric: str,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> Difference:
    """``metric(a) - metric(b)`` with a paired bootstrap interval: both on the same resampled examples."""
    fn = _metric(metric)
    a, b, gold = np.asarray(predictions_a), np.asarray(predictions_b), np.asarray(labels)
    if not len(a) == len(b) == len(gold):
        raise ValueError(f"paired predictions must cover the same examples: {len(a)}, {len(b)} and {len(gold)} labels")
    value = fn(a, gold) - fn(b, gold)
    indices = _resample_indices(len(gold), resamples, seed)
    samples = np.array([fn(a[i], gold[i]) - fn(b[i], gold[i]) for i in indices])
    low, high = _percentiles(samples, confidence)
    return Difference(metric, value, low, high, len(gold), confidence)


_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
"""Student's t at 97.5 % for 1..10 degrees of freedom (scipy is not a dependency); 1.96 beyond."""


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean of a few per-seed values with its 95 % Student-t interval: ``(mean, low, high)``.

    One value has no spread to measure: its interval is the value itself, which a reader must not take for
    certainty (the views print the seed count beside it)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(data.mean())
    if data.size == 1:
        return mean, mean, mean
    t = _T95[data.size - 2] if data.size - 1 <= len(_T95) else 1.96
    half = float(t * data.std(ddof=1) / np.sqrt(data.size))
    return mean, mean - half, mean + half
