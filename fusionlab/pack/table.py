"""The pack as a Markdown table, written from its cards: ``docs/pack.md`` shows it and a test keeps the two equal,
so the documentation can never state a number the shipped weights do not score."""

from __future__ import annotations

from pathlib import Path

from fusionlab.metrics import metric_label
from fusionlab.pack.card import ArtifactCard
from fusionlab.pack.store import pack_cards
from fusionlab.reported import Reported

HEADER = (
    "artifact",
    "task (dev examples)",
    "metric",
    "dev, saved weights [95 % CI]",
    "majority class",
    "beyond majority?",
    "steps (kept)",
    "step chosen on",
    "fusion − its adapter (paired)",
)


def _row(card: ArtifactCard) -> tuple[str, ...]:
    reported = Reported.from_card(card)
    baseline = reported.baseline
    return (
        card.name if card.kind == "adapter" else f"{card.name} (over {', '.join(card.adapters)})",
        f"{card.task} ({card.dev.examples:,})",
        metric_label(card.dev.main_metric),
        f"**{card.dev.main:.3f}** {card.dev.interval.bounds_text()}" if card.dev.interval else f"{card.dev.main:.3f}",
        "" if baseline is None else f"{baseline:.3f}",
        reported.learned_text() or "",
        f"{card.steps:,} ({card.best_step:,})",
        reported.selection_short(),
        (reported.difference_text() or "") if card.kind == "fusion" else "",
    )


def markdown_table(root: str | Path) -> str:
    """One row per artifact of the pack at ``root``, in manifest order, then the total training time."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    cards = pack_cards(root)
    lines += ["| " + " | ".join(_row(card)) + " |" for card in cards]
    hours, minutes = divmod(round(sum(card.wall_seconds for card in cards) / 60), 60)
    lines.append("")
    lines.append(
        f"Wall-clock time on the cards, all artifacts: {hours} h {minutes:02d} min (including any time the build "
        "was paused or shared the machine)."
    )
    return "\n".join(lines)
