"""Where every benchmark's numbers go besides the table it prints: one JSON file, written the same way."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: str | Path, report: dict) -> None:
    """``report`` as indented JSON at ``out`` (folders made), and a line saying where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
