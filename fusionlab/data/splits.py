"""Splits carved out of another split, grouped so that no passage or text is on both sides.

Selection: every task's training rows lose a fixed, grouped part (:func:`selection_split`) on which every
choice made during training is made, so that the dev split is only ever scored.

BoolQ: the offline data has no train split, so train and held-out dev are carved out of the validation file.
IMDb: upstream has no validation split at all (train and test only), so a fixed held-out dev part is carved
out of train, leaving the test split untouched for a final number.

The offline data has no BoolQ train split (see ``shared/data/README.md``), only the 3,270 validation
questions. To still train and evaluate a BoolQ adapter, that file is cut in two. The cut is grouped by the
passage's Wikipedia title (the text before ``" -- "``): 400 titles carry several questions, often about the
same passage, so a row-level split would let the model see the evaluation passages in training.

With the defaults (seed 0, 30 % held out) the held-out part is 981 questions and the train part 2,289, with no
title on both sides. The shared-data README proposes the same procedure with a fixed 1,000 held-out rows;
``heldout_fraction=1000/3270`` reproduces its numbers exactly (2,270 / 1,000).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

Row = TypeVar("Row", bound=Mapping[str, Any])

BOOLQ_SPLIT_SEED = 0
"""Fixed on purpose: it must not follow a run's seed, or different runs would train on each other's
held-out questions."""

BOOLQ_HELDOUT_FRACTION = 0.3

BOOLQ_COMPARABILITY_NOTE = (
    "BoolQ has no train split in the local data, so train and validation are carved out of the official "
    "validation file, grouped by passage title (held-out part about 30 %). Scores on this held-out part are "
    "not comparable to published BoolQ validation numbers."
)


def passage_title(passage: str) -> str:
    """The Wikipedia title that SuperGLUE prefixes to each passage as ``"<title> -- "``."""
    return passage.split(" -- ", 1)[0]


def boolq_split(
    rows: Sequence[Row],
    heldout_fraction: float = BOOLQ_HELDOUT_FRACTION,
    seed: int = BOOLQ_SPLIT_SEED,
) -> tuple[list[Row], list[Row]]:
    """Split BoolQ ``rows`` into ``(train, heldout)`` with no passage title on both sides.

    Titles are sorted, shuffled with ``random.Random(seed)``, and taken into the held-out part until it has
    at least ``ceil(heldout_fraction * len(rows))`` rows; the other titles form the train part. Both parts
    keep the input order, so the result depends only on the rows and the seed.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
    return grouped_split(rows, lambda row: passage_title(row["passage"]), math.ceil(heldout_fraction * len(rows)), seed)


HELDOUT_SPLIT_SEED = 0
"""Seed of every carved dev split: fixed, for the same reason as :data:`BOOLQ_SPLIT_SEED`."""


def grouped_split(
    rows: Sequence[Row], group: Callable[[Row], str], heldout_rows: int, seed: int = HELDOUT_SPLIT_SEED
) -> tuple[list[Row], list[Row]]:
    """Split ``rows`` into ``(train, heldout)`` by whole groups: ``heldout`` gets at least ``heldout_rows`` rows.

    Groups (``group(row)``) are sorted, shuffled with ``random.Random(seed)`` and taken into the held-out part
    until it is large enough, stopping one group short of the end so that the train part is never empty. Both
    parts keep the input order.
    """
    return split_by_keys(rows, [group(row) for row in rows], heldout_rows, seed)


def split_by_keys(
    rows: Sequence[Row], keys: Sequence[str], heldout_rows: int, seed: int = HELDOUT_SPLIT_SEED
) -> tuple[list[Row], list[Row]]:
    """:func:`grouped_split` with each row's group given as ``keys[i]``."""
    distinct = sorted(set(keys))
    if len(distinct) < 2:
        raise ValueError(f"need at least two distinct groups to split, got {len(distinct)}")
    random.Random(seed).shuffle(distinct)
    rows_per_group: dict[str, int] = {}
    for key in keys:
        rows_per_group[key] = rows_per_group.get(key, 0) + 1
    heldout_keys: set[str] = set()
    taken = 0
    for key in distinct[:-1]:
        if taken >= heldout_rows:
            break
        heldout_keys.add(key)
        taken += rows_per_group[key]
    train = [row for row, key in zip(rows, keys) if key not in heldout_keys]
    heldout = [row for row, key in zip(rows, keys) if key in heldout_keys]
    return train, heldout


# -- the selection split: every choice made during training is made here, never on the reported dev split ----

SELECTION_SEED = 0
"""Fixed per task, never a run's seed: every run of a task selects on the same carved examples."""

MAX_SELECTION_ROWS = 1000


def selection_rows(train_rows: int) -> int:
    """How many training rows are carved off for selection: a tenth, at least 50 (a quarter of a tiny task),
    at most :data:`MAX_SELECTION_ROWS` (CB 50 of 250, RTE 249 of 2,490, SST-2 1,000 of 67,349)."""
    return min(MAX_SELECTION_ROWS, max(min(50, train_rows // 4), train_rows // 10, 1))


def text_components(rows: Sequence[Row], keys_of: Callable[[Row], Sequence[str]]) -> list[str]:
    """One group id per row such that rows sharing any key (``keys_of(row)``) are in one group.

    A union-find over the keys: with a pair task's two texts as keys, a premise with three hypotheses, a
    hypothesis reused across premises and an MRPC sentence that is first in one pair and second in another end
    up on one side of a split together, so no text is on both sides.
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        root = key
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    for row in rows:
        first, *others = keys_of(row)
        for other in others:
            a, b = find(first), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return [find(keys_of(row)[0]) for row in rows]


def selection_split(
    rows: Sequence[Row], keys_of: Callable[[Row], Sequence[str]], seed: int = SELECTION_SEED
) -> tuple[list[Row], list[Row]]:
    """Carve ``(train, selection)`` out of a task's training rows, grouped so that no text is on both sides.

    The selection part picks checkpoints, stops training early and chooses learning rates; the dev split is then
    only ever scored, so its number is a held-out one.
    """
    if len(rows) < 2:
        raise ValueError(f"need at least two training rows to carve a selection split, got {len(rows)}")
    return split_by_keys(rows, text_components(rows, keys_of), selection_rows(len(rows)), seed)
