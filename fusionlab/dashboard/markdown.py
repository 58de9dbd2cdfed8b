"""Showing text that users typed without letting it turn into markup.

Streamlit renders ``st.markdown``, captions, alerts, metric labels and progress texts as Markdown (with its own
extensions: ``:red[...]``, ``:material/icon:``), so a run named ``![t](http://…)`` would load an image in every
visitor's browser and ``[x](javascript:…)`` would be a link. Every name, label, message or path that a visitor,
a data file or a checkpoint could have chosen goes through :func:`md` before it reaches such an element; the
dashboard's own markup stays outside it.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_\[\]<>~$:])")  # no link, image, autolink, HTML, emphasis, code, LaTeX, directive
_BLOCK_START = re.compile(r"^(\s*)([+\->]|#{1,6}(?=\s|$)|\d+[.)])")  # a list, heading or quote at the start of the text
_WWW = re.compile(r"(?i)\b(www)\.")  # GFM turns www.example.com into a link even without a scheme


def md(text: object) -> str:
    """``text`` as literal Markdown: every character Markdown (or Streamlit's extensions) would read as markup is
    backslash-escaped, and line breaks become spaces (a name is one line)."""
    flat = _SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))
    flat = _WWW.sub(r"\1\\.", flat)
    return _BLOCK_START.sub(lambda m: f"{m.group(1)}{m.group(2)[:-1]}\\{m.group(2)[-1]}", flat)


def breakable(text: object) -> str:
    """``md(text)`` with a line-break opportunity after each underscore: a label such as ``not_entailment`` in a
    narrow card wraps at its word boundary (where the page lets it wrap) rather than being cut off."""
    return md(text).replace("\\_", "\\_\u200b")


def code(text: object) -> str:
    """``text`` as inline code, safe whatever it holds (a backtick inside ends no span: the fence grows)."""
    flat = " ".join(str(text).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"
