"""Single-task adapter vs AdapterFusion on the pack's adapters, over several seeds, on full dev splits.

The AdapterFusion paper (BERT-base, full training) reports, from single-task adapter to fusion:
RTE 71.0 -> 76.8, MRPC 85.2 -> 90.3, CB 86.1 -> 92.1. This script runs that comparison on the bundled
all-MiniLM-L6-v2 with the pretrained pack as the source adapters (stage 1, trained once, as in the paper). The
single-task adapter is the pack's own for the target (``--retrain-target``: retrained per seed with the pack's
recipe); per seed, fusions over [that adapter, the sources] are trained with the target's recipe (the pack
fusion's sources by default, ``--all-sources`` for every other pack adapter), and every saved checkpoint is
scored afresh on the target's full dev split (the loop's own dev subset only picks the best step).

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
from fusionlab.pack.recipe import ADAPTERS, FUSIONS, FusionRecipe, adapter_recipe
from fusionlab.pack.store import install_pack, pack_dir
from fusionlab.workspace import Workspace

PAPER = {"rte": (71.0, 76.8), "mrpc": (85.2, 90.3), "cb": (86.1, 92.1)}


DEFAULT_SOURCES = ("mnli", "qnli", "sst2", "boolq")


def sources_for(task: str, everything: bool) -> list[str]:
    """The source adapters fused with the target's own: every other pack adapter (the paper's setting), or by
    default the pack fusion's for that target (else the four large-data tasks), which costs a third of the time."""
    if everything:
        return [r.task for r in ADAPTERS if r.task != task]
    pack_fusion = next((f for f in FUSIONS if f.target == task), None)
    if pack_fusion is not None:
        return [a for a in pack_fusion.adapters if a != task]
    return [a for a in DEFAULT_SOURCES if a != task]


def fresh_score(trainer: FusionTrainer, path: Path, task: str) -> float:
    """Main metric (%) of a saved checkpoint, loaded back, on the task's full dev split."""
    result = trainer.evaluate(path)
    return 100 * result.metrics[get_task(task).main_metric]


def target_adapter(workspace: Workspace, task: str, seed: int, args: argparse.Namespace) -> tuple[str, float, float]:
    """The single-task adapter: the pack's own (trained once, as stage 1 of the paper), or one retrained with
    the pack's recipe and this seed (``--retrain-target``). Returns its name, fresh full-dev score, seconds."""
    recipe = dataclasses.replace(adapter_recipe(task), seed=seed)
    trainer = FusionTrainer(recipe.model_config(), recipe.training_config(), workspace, args.data_dir)
    if not args.retrain_target:
        return task, fresh_score(trainer, workspace.adapter_dir(task), task), 0.0
    if args.quick:
        recipe = dataclasses.replace(recipe, steps=3, max_train_samples=32, max_eval_samples=16, eval_steps=None)
        trainer = FusionTrainer(recipe.model_config(), recipe.training_config(), workspace, args.data_dir)
    start = time.monotonic()
    single = trainer.train_adapter(task, recipe.adapter_config(), name=f"{task}-s{seed}")
    return single.name, fresh_score(trainer, single.path, task), time.monotonic() - start


def run_seed(workspace: Workspace, task: str, seed: int, methods: list[str], args: argparse.Namespace) -> dict:
    """The target adapter and one fusion per method for one seed: fresh full-dev scores and seconds."""
    own, single, seconds = target_adapter(workspace, task, seed, args)
    recipe = adapter_recipe(task)
    row = {"single": single, "seconds": {"single": seconds}, "adapters": [own, *sources_for(task, args.all_sources)]}
    for method in methods:
        fusion = FusionRecipe(
            f"{task}-s{seed}-{method}",
            task,
            row["adapters"],
            method=method,
            steps=3 if args.quick else recipe.steps,
            max_length=recipe.max_length,
            batch_size=16,
            max_train_samples=32 if args.quick else recipe.max_train_samples,
            eval_steps=None if args.quick else recipe.eval_steps,
            max_eval_samples=16 if args.quick else recipe.max_eval_samples,
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
        f"Single-task adapter vs fusion over the target's adapter and the pack's source adapters, all-MiniLM-L6-v2, "
        f"fusion seeds {seeds}, main metric (%) of the saved weights on the full dev split (mean ± std over seeds):",
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
    parser.add_argument("--retrain-target", action="store_true", help="retrain the target adapter for every seed")
    parser.add_argument("--all-sources", action="store_true", help="fuse every pack adapter (the paper's setting)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the script runs")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out / "quality-workspace").ensure()
    if pack_dir() is not None:
        install_pack(workspace)
    needed = {a for task in args.tasks.split(",") for a in [task, *sources_for(task, args.all_sources)]}
    missing = sorted(needed - set(workspace.list_adapters()))
    if missing:
        raise SystemExit(f"{workspace.root} lacks the adapters {missing}: build or install the pretrained pack")
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
