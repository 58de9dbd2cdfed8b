"""How long a clean rebuild of the pack takes, and whether it reproduces the bundled pack bit for bit.

The cards' own ``wall_seconds`` were written while the original build shared the 2 cores with tests and other
work, so they cannot say whether ``fusionlab pack build`` fits its budget on idle cores. This compares a rebuild
with the bundled pack, artifact by artifact: the rebuild's wall time beside the card's, whether every weight and
config file has the bundled file's SHA-256 (the recipe is deterministic on one machine), whether the rebuilt card
records the same kept step and the same prediction for every dev example, and both dev scores. A JSON file that
differs (a checkpoint config written by a newer fusionlab) is listed with the keys that differ, apart from the
weights.

An artifact counts as rebuilt when its card differs from the bundled card (a rebuild writes its own wall time);
artifacts copied over unchanged are listed as not rebuilt, so a partial rebuild (``--only``) reads as one.

Usage, on an otherwise idle machine (the build is what is timed; this script only reads)::

    cp -r fusionlab/pack_data /tmp/rebuild   # fusions find the adapters they fuse; nothing is overwritten here
    fusionlab pack build --out /tmp/rebuild --force [--only rte,cola,...]
    python bench/pack_rebuild.py /tmp/rebuild [--out bench/results/pack_rebuild.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from report import write_report

from fusionlab.checkpoint import file_sha256
from fusionlab.pack.card import CARD_FILE
from fusionlab.pack.store import PACK_DIR, read_card, read_manifest

BUDGET_SECONDS = 3 * 3600
"""The issue "Adapters that learn": the whole ``fusionlab pack build`` within 3 h on 2 idle cores."""


def compare(bundled: Path, rebuilt: Path) -> list[dict]:
    """One row per artifact of the bundled pack, in build order, saying whether and how it was rebuilt."""
    rows = []
    for entry in read_manifest(bundled).entries:
        directory = rebuilt / entry.relative_dir
        card_path = directory / CARD_FILE
        if not card_path.is_file() or file_sha256(card_path) == entry.files.get(CARD_FILE):
            rows.append({"name": entry.name, "kind": entry.kind, "rebuilt": False})
            continue
        old, new = read_card(bundled / entry.relative_dir), read_card(directory)
        other_files = {name: sha for name, sha in entry.files.items() if name != CARD_FILE}
        changed = sorted(
            name
            for name, sha in other_files.items()
            if not (directory / name).is_file() or file_sha256(directory / name) != sha
        )
        weights_changed = [name for name in changed if name.endswith(".safetensors")]
        metadata = {
            name: json_differences(_json(bundled / entry.relative_dir / name), _json(directory / name))
            for name in changed
            if name.endswith(".json")
        }
        rows.append(
            {
                "name": entry.name,
                "kind": entry.kind,
                "rebuilt": True,
                "task": new.task,
                "seconds": new.wall_seconds,
                "card_seconds": old.wall_seconds,
                "steps": new.steps,
                "best_step": new.best_step,
                "same_best_step": (new.steps, new.best_step) == (old.steps, old.best_step),
                "same_weights": not weights_changed,
                "changed_files": changed,
                "metadata_differences": metadata,
                "same_predictions": new.dev.predictions is not None and new.dev.predictions == old.dev.predictions,
                "metric": new.dev.main_metric,
                "dev": new.dev.main,
                "card_dev": old.dev.main,
                "device": new.device,
                "versions": new.versions,
            }
        )
    return rows


def _json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def json_differences(old: object, new: object, at: str = "") -> list[str]:
    """The dotted paths where two JSON documents differ (a key added, removed or changed): a checkpoint's config
    written by a newer fusionlab can record more than the bundled one without computing anything else."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            path
            for key in sorted(set(old) | set(new))
            for path in json_differences(old.get(key), new.get(key), f"{at}.{key}" if at else key)
        ]
    return [] if old == new else [at or "(document)"]


def summary(rows: list[dict]) -> dict:
    """Totals over the rebuilt artifacts, and which were not rebuilt (their time is not in the total)."""
    rebuilt = [r for r in rows if r["rebuilt"]]
    return {
        "rebuilt": len(rebuilt),
        "rebuilt_seconds": round(sum(r["seconds"] for r in rebuilt), 1),
        "their_card_seconds": round(sum(r["card_seconds"] for r in rebuilt), 1),
        "all_identical": all(r["same_weights"] and r["same_predictions"] for r in rebuilt),
        "not_rebuilt": [r["name"] for r in rows if not r["rebuilt"]],
        "budget_seconds": BUDGET_SECONDS,
    }


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}"


def print_table(rows: list[dict], totals: dict) -> None:
    print(
        "| artifact | rebuild (min) | card (min) | steps (kept) | same kept step | same weights | same dev predictions | dev |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if not r["rebuilt"]:
            print(f"| {r['name']} | not rebuilt | | | | | | |")
            continue
        weights = "yes" if r["same_weights"] else "no"
        notes = [f"{name}: {', '.join(paths)}" for name, paths in r["metadata_differences"].items()]
        weights += f" (metadata differs, {'; '.join(notes)})" if notes else ""
        print(
            f"| {r['name']} | {_minutes(r['seconds'])} | {_minutes(r['card_seconds'])} | {r['steps']:,} "
            f"({r['best_step']:,}) | {'yes' if r['same_best_step'] else 'no'} | {weights} | "
            f"{'yes' if r['same_predictions'] else 'no'} | {r['metric']} {r['dev']:.4f} (card {r['card_dev']:.4f}) |"
        )
    print(
        f"\n{totals['rebuilt']} rebuilt in {_minutes(totals['rebuilt_seconds'])} min (their cards: "
        f"{_minutes(totals['their_card_seconds'])} min); every rebuilt artifact identical to the bundled one: "
        f"{'yes' if totals['all_identical'] else 'no'}; not rebuilt: {', '.join(totals['not_rebuilt']) or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rebuilt", help="the --out directory of `fusionlab pack build --force`")
    parser.add_argument("--bundled", default=str(PACK_DIR), help="the pack to compare with (default: bundled)")
    parser.add_argument("--out", default="bench/results/pack_rebuild.json")
    args = parser.parse_args()
    rows = compare(Path(args.bundled), Path(args.rebuilt))
    totals = summary(rows)
    print_table(rows, totals)
    write_report(args.out, {"summary": totals, "artifacts": rows})


if __name__ == "__main__":
    main()
