"""Where every benchmark's numbers go besides the table it prints: one JSON file, written the same way by all."""

from __future__ import annotations

import json
import numbers
import statistics
from pathlib import Path


def write_report(out: str | Path, report: object, announce: bool = True) -> Path:
    """``report`` as indented JSON at ``out`` (folders made), and a line saying where.

    Written to a temporary file and renamed, so a resumable bench interrupted mid-write (``quality.py`` and
    ``lr_sweep.py`` save after every run) keeps its previous file whole. NumPy scalars are written as numbers."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=_number) + "\n", encoding="utf-8")
    tmp.replace(out)
    if announce:
        print(f"wrote {out}")
    return out


def _number(value: object) -> float | int:
    """A NumPy (or other non-builtin) number as the JSON number it is; anything else is an error, as json's."""
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def paired_summary(gains: list[float], verdicts: list[str]) -> str:
    """Paired gains over seeds in one cell: their mean, and how many seeds' paired 95 % intervals exclude 0.

    ``gains`` are in the unit the table prints (points), ``verdicts`` are each seed's ``Difference.verdict()``. A
    seed whose interval includes 0 counts as within noise, not as a win, however large its mean."""
    if not gains:
        return "–"
    counts = {v: verdicts.count(v) for v in ("better", "worse", "within noise")}
    return (
        f"{statistics.mean(gains):+.1f} "
        f"({counts['better']} better, {counts['worse']} worse, {counts['within noise']} within noise)"
    )
