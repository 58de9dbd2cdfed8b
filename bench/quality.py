"""Single-task adapter vs AdapterFusion on the pack's adapters, over several seeds, on full dev splits.

The AdapterFusion paper (BERT-base, full training) reports, from single-task adapter to fusion:
RTE 71.0 -> 76.8, MRPC 85.2 -> 90.3, CB 86.1 -> 92.1. This script runs that comparison on the bundled
all-MiniLM-L6-v2 with the pretrained pack as the source adapters (stage 1, trained once, as in the paper). Per
target task and seed it trains the target's own adapter with the pack's recipe for that task (only the seed
changes), then fusions over [that adapter, every other pack adapter] with the same recipe, and scores every
saved checkpoint afresh on the target's full dev split (the loop's own dev subset only picks the best step).

Targets: rte, cb, mrpc and a low-resource sentiment target, imdb with 500 training reviews (where the SST-2
adapter has something to give). Writes a Markdown table (mean ± std over seeds) and JSON with every run.

Usage: ``python bench/quality.py [--tasks rte,cb,mrpc,imdb] [--seeds 1,2,3] [--methods attention,weighted,average]
[--out bench/results]`` (``--quick``: a few steps, to check the script runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

from fusionlab import FusionTrainer
from fusionlab.data import get_task
from fusionlab.pack.recipe import ADAPTERS, FusionRecipe, adapter_recipe
from fusionlab.pack.store import install_pack, pack_dir
from fusionlab.workspace import Workspace

PAPER = {"rte": (71.0, 76.8), "mrpc": (85.2, 90.3), "cb": (86.1, 92.1)}


def sources_for(task: str) -> list[str]:
    """Every pack adapter but the target task's own (that one is retrained per seed)."""
    return [r.task for r in ADAPTERS if r.task != task]


def fresh_score(trainer: FusionTrainer, path: Path, task: str) -> float:
    """Main metric (%) of a saved checkpoint, loaded back, on the task's full dev split."""
    result = trainer.evaluate(path)
    return 100 * result.metrics[get_task(task).main_metric]


def run_seed(workspace: Workspace, task: str, seed: int, methods: list[str], args: argparse.Namespace) -> dict:
    """The target adapter and one fusion per method for one seed: fresh full-dev scores and seconds."""
    recipe = dataclasses.replace(adapter_recipe(task), seed=seed)
    if args.quick:
        recipe = dataclasses.replace(recipe, steps=3, max_train_samples=32, max_eval_samples=16, eval_steps=None)
    trainer = FusionTrainer(recipe.model_config(), recipe.training_config(), workspace, args.data_dir)
    own = f"{task}-s{seed}"
    start = time.monotonic()
    single = trainer.train_adapter(task, recipe.adapter_config(), name=own)
    row = {"single": fresh_score(trainer, single.path, task), "seconds": {"single": time.monotonic() - start}}
    for method in methods:
        fusion = FusionRecipe(
            f"{own}-{method}",
            task,
            [own, *sources_for(task)],
            method=method,
            steps=recipe.steps,
            max_length=recipe.max_length,
            batch_size=16,
            max_train_samples=recipe.max_train_samples,
            eval_steps=recipe.eval_steps,
            max_eval_samples=recipe.max_eval_samples,
            seed=seed,
        )
        trainer = FusionTrainer(fusion.model_config(), fusion.training_config(), workspace, args.data_dir)
        start = time.monotonic()
        fused = trainer.train_fusion(task, fusion.adapters, method=method, name=fusion.name)
        row[method] = fresh_score(trainer, fused.path, task)
        row["seconds"][method] = time.monotonic() - start
        row.setdefault("fusion_stats", {})[method] = fused.evaluation.fusion_stats.to_dict()
    return row


def fmt(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(rows: dict[str, list[dict]], methods: list[str], seeds: str) -> str:
    head = " | ".join(f"{m} fusion" for m in methods)
    lines = [
        f"Single-task adapter vs fusion over [target, every other pack adapter], all-MiniLM-L6-v2, seeds {seeds}, "
        "main metric (%) of the saved weights on the full dev split (mean ± std over seeds):",
        "",
        f"| task | metric | single adapter | {head} | Δ attention | paper (BERT-base) single → fusion |",
        "|---|---|---|" + "---|" * len(methods) + "---|---|",
    ]
    for task, runs in rows.items():
        single = [r["single"] for r in runs]
        cells = [fmt([r[m] for r in runs if m in r]) for m in methods]
        attention = [r["attention"] for r in runs if "attention" in r]
        delta = f"{statistics.mean(attention) - statistics.mean(single):+.1f}" if attention else "–"
        paper = PAPER.get(task)
        lines.append(
            f"| {task} | {get_task(task).main_metric} | {fmt(single)} | {' | '.join(cells)} | {delta} | "
            f"{f'{paper[0]} → {paper[1]}' if paper else '–'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rte,cb,mrpc,imdb")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--methods", default="attention,weighted,average")
    parser.add_argument("--data-dir", default=os.environ.get("FUSIONLAB_DATA_DIR"))
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the script runs")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if pack_dir() is None:
        raise SystemExit("bench/quality.py needs the pretrained pack (fusionlab/pack_data; $FUSIONLAB_PACK unset)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out / "quality-workspace").ensure()
    install_pack(workspace)
    started = time.monotonic()
    rows: dict[str, list[dict]] = {}
    for task in args.tasks.split(","):
        for seed in args.seeds.split(","):
            row = run_seed(workspace, task, int(seed), methods, args)
            rows.setdefault(task, []).append({"seed": int(seed), **row})
            scores = ", ".join(f"{k} {v:.1f}" for k, v in row.items() if isinstance(v, float))
            print(f"{task} seed {seed}: {scores}", flush=True)
    text = table(rows, methods, args.seeds)
    print("\n" + text)
    stem = f"quality-{'-'.join(rows)}"
    (out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    result = {"args": vars(args), "rows": rows, "seconds": time.monotonic() - started}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
