"""Dev splits carved out of another split, grouped so that no passage or text is on both sides.

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
    keys = [group(row) for row in rows]
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
