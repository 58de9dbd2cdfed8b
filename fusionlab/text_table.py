"""Plain-text tables for the command line: the first column left-aligned, the others right-aligned (numbers)."""

from __future__ import annotations

from collections.abc import Sequence


def align_columns(header: Sequence[str], body: Sequence[Sequence[str]], rule: bool = False) -> list[str]:
    """``header`` and ``body`` as aligned lines, each column as wide as its widest cell; ``rule`` adds a line of
    dashes under the header."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:]))
        return "  ".join([first, *rest]).rstrip()

    dashes = ["  ".join("-" * width for width in widths)] if rule else []
    return [line(header), *dashes, *(line(cells) for cells in body)]
