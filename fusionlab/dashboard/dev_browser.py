"""The dev-set browser: where the fusion wins and loses against its target task's own adapter, example by example.

A dev score says how often; a learner also wants to see *which* examples fusion gets right that the single
adapter gets wrong (and the reverse), and to load one into the Playground to see which adapters the fusion
leaned on there. The examples are a fixed subset of the task's dev split (:data:`DEV_SAMPLE` rows, the subset
``max_samples`` draws for every run of the task, whatever its seed), scored by both paths through the same
batched evaluation the training uses.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from fusionlab.dashboard.errors import DashboardError
from fusionlab.dashboard.inference import Predictor
from fusionlab.data.loading import load_split, split_unreachable
from fusionlab.data.tokenization import make_collator, tokenize_dataset
from fusionlab.evaluation import EvaluationResult, evaluate_model
from fusionlab.uncertainty import Difference, Score, paired_difference

DEV_SAMPLE = 200
FUSION_WINS = "fusion right, adapter wrong"
ADAPTER_WINS = "adapter right, fusion wrong"
BOTH_RIGHT = "both right"
BOTH_WRONG = "both wrong"
OUTCOMES = (FUSION_WINS, ADAPTER_WINS, BOTH_RIGHT, BOTH_WRONG)


@dataclass(frozen=True)
class DevExample:
    """One dev example with the gold label and both answers."""

    row: int
    text: str
    pair: str | None
    gold: str
    fused: str
    fused_confidence: float
    single: str | None  # None when the target task has no adapter among the fused ones

    @property
    def outcome(self) -> str:
        fusion_right = self.fused == self.gold
        if self.single is None:
            return BOTH_RIGHT if fusion_right else BOTH_WRONG
        adapter_right = self.single == self.gold
        if fusion_right != adapter_right:
            return FUSION_WINS if fusion_right else ADAPTER_WINS
        return BOTH_RIGHT if fusion_right else BOTH_WRONG

    @property
    def disagree(self) -> bool:
        """The fusion and the target's adapter alone give different answers (the examples worth a look)."""
        return self.single is not None and self.single != self.fused

    def as_row(self) -> dict[str, object]:
        row: dict[str, object] = {"row": self.row, "text": readable(self.text)}
        if self.pair is not None:
            row["second text"] = readable(self.pair)
        return row | {
            "gold": self.gold,
            "adapter alone": self.single or "",
            "fusion": self.fused,
            "fusion confidence": self.fused_confidence,
            "outcome": self.outcome,
        }


def _dev_set(predictor: Predictor, data_dir: str | None, limit: int):
    """The fixed dev subset, tokenised for the fusion, and its collator; a :class:`DashboardError` if unreadable."""
    info = predictor.info
    reason = split_unreachable(info.task, "validation", data_dir)
    if reason:
        raise DashboardError(f"The dev-set browser needs the task's dev split: {reason}")
    dev = load_split(info.task, "validation", data_dir, max_samples=limit)
    return (
        dev,
        tokenize_dataset(dev, info.task, predictor.tokenizer, info.max_length),
        make_collator(predictor.tokenizer),
    )


def dev_examples(predictor: Predictor, data_dir: str | None, limit: int = DEV_SAMPLE) -> list[DevExample]:
    """The first ``limit`` examples of the fixed dev subset, each scored by the fusion and by the target's own
    adapter; a :class:`DashboardError` says why when the dev split cannot be read here."""
    info = predictor.info
    dev, tokenized, collator = _dev_set(predictor, data_dir, limit)
    with predictor.lock:
        fused = evaluate_model(predictor.model, tokenized, info.task, collator, list(info.adapters)).predictions
        single = None
        if info.own_adapter is not None:
            single = evaluate_model(predictor.model, tokenized, info.task, collator, [info.own_adapter]).predictions
    labels = info.label_names
    fields = info.task.text_fields
    return [
        DevExample(
            row=i,
            text=record[fields[0]],
            pair=record[fields[1]] if len(fields) > 1 else None,
            gold=labels[answer["label"]],
            fused=labels[answer["prediction"]],
            fused_confidence=max(answer["probabilities"]),
            single=labels[single[i]["prediction"]] if single is not None else None,
        )
        for i, (record, answer) in enumerate(zip(dev, fused))
    ]


@dataclass(frozen=True)
class DevDrops:
    """The fusion's dev metric with all its adapters and with each one switched off in turn."""

    metric: str
    examples: int
    with_all: float
    without: dict[str, float]
    differences: dict[str, Difference] = field(default_factory=dict)
    """Per adapter: the metric without it minus with all, with the paired interval on the same examples."""
    with_all_interval: Score | None = None
    """``with_all``'s bootstrap interval over the same examples."""

    def change(self, adapter: str) -> float:
        return self.without[adapter] - self.with_all


def dev_leave_one_out(predictor: Predictor, data_dir: str | None, limit: int = DEV_SAMPLE) -> DevDrops:
    """Leave-one-out averaged over the fixed dev subset: the task's main metric of the fusion over all its
    adapters, and over all but each one (the rest renormalised, as in the Playground).

    Needs three adapters or more: with two, dropping one leaves a single adapter, which the model runs on its own
    path with its own head, not through the fusion.
    """
    info = predictor.info
    if len(info.adapters) < 3:
        raise DashboardError("Averaging over the dev set needs a fusion of three adapters or more.")
    _, tokenized, collator = _dev_set(predictor, data_dir, limit)
    metric = info.task.main_metric

    def evaluate(names: list[str]) -> EvaluationResult:
        return evaluate_model(predictor.model, tokenized, info.task, collator, names, keep_predictions=False)

    with predictor.lock:
        full = evaluate(list(info.adapters))
        dropped = {name: evaluate([a for a in info.adapters if a != name]) for name in info.adapters}
    return DevDrops(
        metric,
        len(tokenized),
        full.metrics[metric],
        {name: result.metrics[metric] for name, result in dropped.items()},
        {name: result.difference(full, metric) for name, result in dropped.items()},
        full.score(metric),
    )


_MARKUP_BREAK = re.compile(r"(?:\s*<br\s*/?>\s*)+", re.IGNORECASE)


def readable(text: str) -> str:
    """A dataset text as a table shows it: the HTML line breaks IMDb's reviews carry (``<br /><br />``) become
    one space (the text loaded into the Playground stays the text the model was scored on)."""
    return _MARKUP_BREAK.sub(" ", text).strip()


def outcome_difference(examples: list[DevExample], labels: Sequence[str]) -> Difference | None:
    """The fusion's accuracy minus its target adapter's on these examples, with the paired interval: whether
    the fusion's wins outnumber its losses beyond noise, which the two counts alone do not say. ``None`` without
    the target's adapter (or without examples)."""
    if not examples or any(e.single is None for e in examples):
        return None
    ids = {label: i for i, label in enumerate(labels)}
    fused, single, gold = ([ids[getattr(e, k)] for e in examples] for k in ("fused", "single", "gold"))
    return paired_difference(fused, single, gold, "accuracy")


def disagreements(examples: list[DevExample], count: int = 4) -> list[DevExample]:
    """A short gallery of examples where the two answers differ: fusion right and adapter right in turn, the
    shortest first (they fit on a button and read in a glance)."""
    wins = sorted((e for e in examples if e.outcome == FUSION_WINS), key=lambda e: len(e.text))
    losses = sorted((e for e in examples if e.outcome == ADAPTER_WINS), key=lambda e: len(e.text))
    others = sorted((e for e in examples if e.disagree and e.outcome == BOTH_WRONG), key=lambda e: len(e.text))
    interleaved = [e for pair in zip(wins, losses) for e in pair] + wins[len(losses) :] + losses[len(wins) :]
    return (interleaved + others)[:count]


def outcome_counts(examples: list[DevExample]) -> dict[str, int]:
    """How many examples fall in each outcome, in :data:`OUTCOMES` order."""
    counts = Counter(example.outcome for example in examples)
    return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}


def filter_examples(
    examples: list[DevExample], gold: str | None = None, outcome: str | None = None
) -> list[DevExample]:
    """The examples with that gold label and/or that outcome (None: any)."""
    return [e for e in examples if (gold is None or e.gold == gold) and (outcome is None or e.outcome == outcome)]
