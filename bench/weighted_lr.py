"""The weighted fusion's logit learning-rate scale, swept and scored on the selection split (dev plays no part).

A weighted fusion mixes adapters with one softmax logit per adapter and layer. Under Adam every parameter moves
about one learning rate a step at most, so at a fusion's 1e-3 for a few hundred steps those few logits cannot leave
uniform and the method trains exactly like average fusion. :class:`~fusionlab.fusion.weighted.WeightedFusion`
declares a scale for them (``learning_rate_scales``); this sweep trains one weighted fusion per candidate scale
over the pack's adapters for a target (the target's pack adapter first, the pack fusion's sources after it; the
quality bench's fusion recipe and seed), plus an average fusion as the reference a scale that does nothing equals.
Every saved checkpoint is scored afresh on the full dev split with its 95 % interval, paired with the average
fusion on the same examples.

The rule, fixed before the sweep ran: the scale with the best *selection* score wins; ties go to the scale whose
weights moved furthest from uniform (the method as described, not a disguised average). Dev plays no part.

Resumable: every finished candidate is written to the JSON at once and skipped on a rerun.

Usage: ``python bench/weighted_lr.py [--task cb] [--seed 1] [--scales 1,10,100] [--out bench/results/weighted_lr.json]``
(``--quick``: three steps per fusion, to check the script runs).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from report import write_report

from fusionlab import FusionTrainer
from fusionlab.budgets import NO_LIMIT, resolve_budget
from fusionlab.fusion.weighted import WeightedFusion
from fusionlab.pack.recipe import fusion_sources
from fusionlab.pack.store import PackError, install_pack, pack_dir, read_manifest, verify_installed_weights
from fusionlab.uncertainty import Difference, Score
from fusionlab.workspace import Workspace

REFERENCE = "average"


def trainer_for(workspace: Workspace, args: argparse.Namespace) -> FusionTrainer:
    """The quality bench's fusion recipe for the target, with the seed (``--quick``: three steps, short inputs)."""
    if args.quick:
        plan = resolve_budget(args.task, "fusion", seed=args.seed, steps=3, max_train_samples=32, max_length=64,
                              max_eval_samples=16, eval_steps=NO_LIMIT, snapshot_steps=NO_LIMIT)  # fmt: skip
    else:
        plan = resolve_budget(args.task, "fusion", seed=args.seed, snapshot_steps=NO_LIMIT)
    return FusionTrainer(plan.model_config(), plan.training_config(), workspace, args.data_dir)


def fusion_name(args: argparse.Namespace, scale: float | None) -> str:
    return f"{args.task}-s{args.seed}-{REFERENCE if scale is None else f'weighted-x{scale:g}'}"


def train_one(workspace: Workspace, args: argparse.Namespace, scale: float | None) -> tuple:
    """One fusion over [task, its sources]: weighted with its logits at ``scale`` times the run's learning rate,
    or the average fusion where ``scale`` is None. Returns the training result, its fresh dev evaluation and the
    seconds it took."""
    trainer = trainer_for(workspace, args)
    method = REFERENCE if scale is None else "weighted"
    default = WeightedFusion.learning_rate_scales
    if scale is not None:
        WeightedFusion.learning_rate_scales = {"fusion_weights": scale}
    try:
        start = time.perf_counter()
        sources = [args.task, *fusion_sources(args.task)]
        result = trainer.train_fusion(args.task, sources, method=method, name=fusion_name(args, scale))
        seconds = time.perf_counter() - start
    finally:
        WeightedFusion.learning_rate_scales = default
    return result, trainer.evaluate(result.path), seconds


def row_for(result, fresh, reference, scale: float | None, seconds: float) -> dict:
    metric = result.main_metric
    weights = result.evaluation.fusion_stats.mean  # per layer, the mean weight of each adapter on dev
    uniform = 1.0 / len(weights[0])
    return {
        "candidate": REFERENCE if scale is None else f"weighted x{scale:g}",
        "scale": scale,
        "steps": result.steps,
        "best_step": result.best_step,
        "selection_best": result.selection_metrics.get(metric),
        "selection_examples": result.selection.selection_examples if result.selection else None,
        "dev": fresh.score(metric).to_dict(),
        "vs_average": fresh.difference(reference, metric).to_dict() if reference is not None else None,
        "furthest_from_uniform": max(abs(w - uniform) for layer in weights for w in layer),
        "weights": weights,
        "seconds": round(seconds, 1),
    }


def chosen(rows: list[dict]) -> dict:
    """The rule above: best selection score, ties to the weights that moved furthest."""
    weighted = [r for r in rows if r["scale"] is not None]
    return max(weighted, key=lambda r: (r["selection_best"], r["furthest_from_uniform"]))


def table(rows: list[dict]) -> str:
    lines = [
        "| candidate | steps (kept) | selection (n) | dev [95 % CI] (n) | vs average fusion, paired | furthest weight "
        "from uniform | chosen | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best = chosen(rows) if any(r["scale"] is not None for r in rows) else None
    for r in rows:
        paired = Difference.from_dict(r["vs_average"]).text() if r["vs_average"] else "–"
        lines.append(
            f"| {r['candidate']} | {r['steps']} ({r['best_step']}) | {r['selection_best']:.3f} "
            f"({r['selection_examples']}) | {Score.from_dict(r['dev']).text()} | {paired} | "
            f"{r['furthest_from_uniform']:.3f} | {'◀' if r is best else ''} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cb")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scales", default="1,10,100")
    parser.add_argument("--data-dir", default=os.environ.get("FUSIONLAB_DATA_DIR"))
    parser.add_argument("--workspace", default="bench/results/weighted-workspace")
    parser.add_argument("--out", default="bench/results/weighted_lr.json")
    parser.add_argument("--quick", action="store_true", help="three steps per fusion: checks the script runs")
    args = parser.parse_args()
    if pack_dir() is None:
        raise SystemExit("the sweep fuses the pack's adapters: build or install the pretrained pack")
    workspace = Workspace(args.workspace).ensure()
    install_pack(workspace)
    try:
        verify_installed_weights(workspace, [args.task, *fusion_sources(args.task)])
    except PackError as err:
        raise SystemExit(f"{workspace.root}: {err}; move the workspace aside to install the pack afresh") from err
    out = Path(args.out)
    saved = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else None
    if saved and (saved["task"], saved["seed"], saved["quick"]) != (args.task, args.seed, args.quick):
        raise SystemExit(
            f"{out} swept {saved['task']} seed {saved['seed']} (quick: {saved['quick']}): pass another --out"
        )
    rows: list[dict] = saved["runs"] if saved else []
    pack = read_manifest(pack_dir()).weights_digest()
    if saved and saved["pack"] != pack:
        raise SystemExit(f"{out} was swept on another pack's weights: pass another --out")
    reference = None
    for scale in [None, *(float(s) for s in args.scales.split(","))]:  # the average fusion first: the reference
        candidate = REFERENCE if scale is None else f"weighted x{scale:g}"
        if any(r["candidate"] == candidate for r in rows):
            pending = [c for c in args.scales.split(",") if not any(r["scale"] == float(c) for r in rows)]
            if scale is None and pending:  # measured before: its saved weights, evaluated again, for the pairing
                reference = trainer_for(workspace, args).evaluate(workspace.fusion_dir(fusion_name(args, None)))
            continue
        print(f"{args.task} seed {args.seed}: {candidate}", flush=True)
        result, fresh, seconds = train_one(workspace, args, scale)
        rows.append(row_for(result, fresh, reference, scale, seconds))
        reference = fresh if scale is None else reference
        saving = {"task": args.task, "seed": args.seed, "quick": args.quick, "pack": pack, "runs": rows}
        write_report(out, saving, announce=False)
        print(table(rows), flush=True)
    print(table(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
