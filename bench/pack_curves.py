"""The dev curves behind the pack's recipe: for every artifact, its in-training dev metric at each evaluation.

The recipe (``fusionlab/pack/recipe.py``) fixes steps, learning rates and lengths; this prints what each
choice produced when the pack was built, read from the cards (``card.json``) that the build wrote: the dev
metric at every evaluation step, the step selected, and the saved weights' score on the full dev split. A
curve still rising at its last step says that artifact would gain from more steps; a flat one says the budget
is spent where it pays. Writes the same as JSON.

Usage: ``python bench/pack_curves.py [--pack DIR] [--out bench/results/pack_curves.json]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from report import write_report

from fusionlab.pack.store import PACK_DIR, read_card, read_manifest


def curves(root: Path) -> list[dict]:
    rows = []
    for entry in read_manifest(root).entries:
        card = read_card(root / entry.relative_dir)
        metric = f"eval_{card.dev.main_metric}"
        points = [(int(p["step"]), float(p[metric])) for p in card.curve if metric in p]
        rows.append(
            {
                "name": card.name,
                "kind": card.kind,
                "task": card.task,
                "metric": card.dev.main_metric,
                "steps": card.steps,
                "best_step": card.best_step,
                "in_training_eval_examples": card.in_training_eval_examples,
                "curve": points,
                "full_dev": card.dev.main,
                "full_dev_examples": card.dev.examples,
                "own_adapter_full_dev": card.own_adapter_dev.main if card.own_adapter_dev else None,
                "majority": card.dev.majority_baseline.get(card.dev.main_metric),
                "seconds": card.wall_seconds,
                "recipe": card.recipe,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default=str(PACK_DIR))
    parser.add_argument("--out", default="bench/results/pack_curves.json")
    args = parser.parse_args()
    rows = curves(Path(args.pack))
    print(
        "| artifact | metric | dev curve (step: value, in-training dev subset) | best step | full dev | majority | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        curve = ", ".join(f"{step}: {value:.3f}" for step, value in row["curve"])
        own = f" (its adapter alone {row['own_adapter_full_dev']:.3f})" if row["own_adapter_full_dev"] else ""
        print(
            f"| {row['name']} | {row['metric']} | {curve} | {row['best_step']}/{row['steps']} | "
            f"{row['full_dev']:.3f} on {row['full_dev_examples']}{own} | {row['majority']:.3f} | {row['seconds']:.0f} |"
        )
    write_report(args.out, rows)


if __name__ == "__main__":
    main()
