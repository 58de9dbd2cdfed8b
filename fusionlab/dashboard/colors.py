"""One colour per adapter, the same on every page and in every chart, readable on light and dark themes."""

from __future__ import annotations

import hashlib

# Okabe-Ito (colour-blind safe) without black, then Tableau hues: all mid-luminance, legible on both themes.
PALETTE = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#0072B2",
    "#F0E442",
    "#8C564B",
    "#17BECF",
    "#BCBD22",
)

# Fixed slots for the built-in tasks so the classroom demo always looks the same.
_FIXED = {"sst2": 0, "mnli": 1, "boolq": 2, "rte": 3, "cb": 4, "mrpc": 5, "qnli": 6, "cola": 7, "sick": 8, "imdb": 9}


def adapter_color(name: str) -> str:
    """Stable colour for an adapter name: fixed for built-in tasks, hashed (not random) for the rest."""
    slot = _FIXED.get(name)
    if slot is None:
        slot = int(hashlib.sha1(name.encode()).hexdigest(), 16) % len(PALETTE)
    return PALETTE[slot]


def adapter_colors(names: list[str]) -> dict[str, str]:
    """``{name: colour}`` for Plotly's ``color_discrete_map``."""
    return {name: adapter_color(name) for name in names}
