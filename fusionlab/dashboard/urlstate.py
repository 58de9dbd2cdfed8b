"""The view in the URL: a copied link reopens the same page with the same fusion, text and pair.

The page is the URL path (``/playground``, from ``st.Page(url_path=...)`` in ``app.py``). The fusion, the text
and the pair are query parameters, kept by Streamlit's own binding of a widget to ``st.query_params``
(``bind="query-params"``): the widget reads its parameter when the page loads and writes it when the user
changes it, so no page has to copy values back and forth. One parameter name per value, shared by the pages
that show it, keeps the chosen fusion when the user moves from the Playground to Efficiency or Mechanics.

Bound parameters can only be changed through ``st.session_state`` (Streamlit owns them), which is what
:func:`set_default` and :func:`use_example` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from fusionlab.dashboard.examples import TEXT_MAX_CHARS as TEXT_MAX_CHARS  # the text boxes use it
from fusionlab.dashboard.examples import Example

FUSION = "fusion"
TEXT = "text"
PAIR = "pair"
METHOD = "method"
TEMPERATURE = "temperature"
VIEW = "view"
ZOOM = "zoom"
SOURCE = "source"
LAYER = "layer"
COMPARE = "compare"
COMPARISON = "comparison"

WEIGHT_VIEWS = ("Layers × adapters", "Tokens × adapters", "Learned weights", "Drop each adapter", "Which words decide")
"""The Playground's weight tabs; a tab's label is its value in the URL (``view=``), so renaming one breaks links."""


def bound(key: str) -> dict[str, str]:
    """Keyword arguments that keep a widget's value in the URL under ``key``: ``st.text_area(..., **bound(TEXT))``."""
    return {"key": key, "bind": "query-params"}


def unknown_choice(key: str, options: Sequence[str]) -> str | None:
    """The value a link gave ``key`` if it is not among ``options`` (call before the bound widget is drawn).

    Streamlit drops an invalid bound value silently and shows the default; a page that calls this first can
    say that the link asked for something this workspace does not have instead of pretending it was shown.
    """
    asked = st.query_params.get(key)
    return asked if asked is not None and asked not in options else None


def set_default(key: str, value: Any) -> None:
    """Give a bound widget its first value unless the session (or the URL, which wins on load) already has one.

    Setting the value here rather than through the widget's ``value=`` lets an example button overwrite it
    later without Streamlit complaining that a widget has both a default and a session-state value.
    """
    if key not in st.session_state:
        st.session_state[key] = value


def forget_inputs() -> None:
    """Fusion picker callback: another fusion may be another task (a movie review is no RTE premise), so its
    text boxes start again from that task's first example instead of keeping text meant for the last one."""
    for key in (TEXT, PAIR):
        st.session_state.pop(key, None)


LEARNED = "learned"
WEIGHT_CHOICES = (LEARNED, *(f"{i / 20:.2f}" for i in range(21)))
"""The what-if sliders' stops: the fusion's own weight, or 0 to 1 in steps of 0.05 (text, so the link keeps them)."""


def weight_key(fusion: str, adapter: str) -> str:
    return f"w_{fusion}_{adapter}"


def weight_layer_key(fusion: str) -> str:
    return f"wlayer_{fusion}"


def back_to_learned(fusion: str, adapters: Sequence[str]) -> None:
    """Button callback: every what-if slider of the fusion back to its learned weight."""
    for adapter in adapters:
        st.session_state[weight_key(fusion, adapter)] = LEARNED


def use_example(example: Example) -> None:
    """Button callback: put an example into the text (and pair) boxes, and so into the URL."""
    st.session_state[TEXT] = example.text
    st.session_state[PAIR] = example.pair or ""
