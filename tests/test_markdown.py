"""User text is shown as text: :func:`fusionlab.dashboard.markdown.md` output renders to no markup at all."""

from __future__ import annotations

import html

import pytest
from markdown_it import MarkdownIt

from fusionlab.dashboard.markdown import breakable, code, md

ATTACKS = [
    "![t](http:127.0.0.1:9988?md_img)",
    "[x](javascript:alert(1))",
    "<http://127.0.0.1:9988/autolink>",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ `code` ~~gone~~",
    "- a list\n# a heading",
    "1. ordered",
    "| a | b |",
    "$x^2$ :red[red] :material/home:",
    "back\\slash \\[not a link\\](x)",
]


def _render(text: str) -> str:
    return MarkdownIt("commonmark").enable("strikethrough").enable("table").render(text)


@pytest.mark.parametrize("text", ATTACKS)
def test_escaped_text_renders_as_the_same_text(text: str) -> None:
    rendered = _render(md(text))
    assert "<a " not in rendered and "<img" not in rendered and "<strong" not in rendered and "<em" not in rendered
    assert "<li" not in rendered and "<h1" not in rendered and "<code" not in rendered and "<table" not in rendered
    inner = rendered.strip().removeprefix("<p>").removesuffix("</p>")
    assert html.unescape(inner) == " ".join(text.splitlines())


@pytest.mark.parametrize("text", [*ATTACKS, "not_entailment"])
def test_breakable_text_renders_as_the_same_text_with_break_points(text: str) -> None:
    """A label made breakable at its underscores is still only text; the breaks are zero-width spaces."""
    rendered = _render(breakable(text))
    assert "<a " not in rendered and "<img" not in rendered and "<em" not in rendered and "<strong" not in rendered
    inner = html.unescape(rendered.strip().removeprefix("<p>").removesuffix("</p>"))
    assert inner.replace("\u200b", "") == " ".join(text.splitlines())
    assert inner.count("\u200b") == text.count("_")


def test_code_spans_survive_backticks() -> None:
    rendered = _render(code("a`b"))
    assert rendered.strip() == "<p><code>a`b</code></p>"
