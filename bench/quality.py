"""Single-task adapter vs AdapterFusion on small target tasks, over several seeds, with the default model.

The AdapterFusion paper (BERT-base, full training) reports, from single-task adapter to fusion:
RTE 71.0 -> 76.8, MRPC 85.2 -> 90.3, CB 86.1 -> 92.1. This script runs the same comparison at CPU scale on the
bundled all-MiniLM-L6-v2: source adapters (SST-2, MNLI, BoolQ) are trained once; then, per target task and seed,
the target's own adapter and an attention fusion over [target, sst2, mnli, boolq] are trained with the same
budget and scored on the target's dev split. It writes a Markdown table (mean ± std over seeds) and JSON.

Usage: ``python bench/quality.py [--tasks rte,mrpc,cb] [--seeds 1,2,3] [--steps 300] [--out bench/results]``
(``--quick`` for a smoke run of a few steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from fusionlab import AdapterConfig, FusionConfig, FusionTrainer, ModelConfig, TrainingConfig
from fusionlab.data import get_task
from fusionlab.workspace import Workspace

SOURCES = ("sst2", "mnli", "boolq")
PAPER = {"rte": (71.0, 76.8), "mrpc": (85.2, 90.3), "cb": (86.1, 92.1)}


def training_config(steps: int, lr: float, seed: int, args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(
        max_steps=steps,
        learning_rate=lr,
        per_device_train_batch_size=args.batch_size,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        eval_steps=max(1, steps // 2),
        early_stopping_patience=None,
        seed=seed,
    )


def train_sources(workspace: Workspace, args: argparse.Namespace) -> dict[str, dict]:
    """The source adapters, trained once (seed 1), as in the paper's stage 1; reused if already in the workspace."""
    from fusionlab.checkpoint import read_meta

    results = {}
    for task in SOURCES:
        if args.reuse_sources and task in workspace.list_adapters():
            results[task] = read_meta(workspace.adapter_dir(task))["extra"]["metrics"]
            print(f"source adapter {task} (reused): {results[task]}", flush=True)
            continue
        trainer = FusionTrainer(
            ModelConfig(max_length=args.max_length),
            training_config(args.source_steps, 1e-3, 1, args),
            workspace,
            args.data_dir,
        )
        result = trainer.train_adapter(task, AdapterConfig(adapter_size=args.adapter_size))
        results[task] = result.metrics
        print(f"source adapter {task}: {result.metrics}", flush=True)
    return results


def run_target(workspace: Workspace, task: str, seed: int, args: argparse.Namespace) -> tuple[float, float]:
    """Main dev metric (%) of the single-task adapter and of fusion for one target task and seed."""
    spec = get_task(task)
    name = f"{task}-seed{seed}"
    trainer = FusionTrainer(
        ModelConfig(max_length=args.max_length), training_config(args.steps, 1e-3, seed, args), workspace, args.data_dir
    )
    single = trainer.train_adapter(task, AdapterConfig(adapter_size=args.adapter_size), name=name)
    fusion_trainer = FusionTrainer(
        ModelConfig(max_length=args.max_length), training_config(args.steps, 5e-4, seed, args), workspace, args.data_dir
    )
    fused = fusion_trainer.train_fusion(
        task,
        [name, *SOURCES],
        fusion_config=FusionConfig(fusion_method="attention", adapter_names=[name, *SOURCES]),
        name=f"{name}-fusion",
    )
    return 100 * single.metrics[spec.main_metric], 100 * fused.metrics[spec.main_metric]


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="rte,mrpc,cb")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--steps", type=int, default=300, help="steps for each target adapter and each fusion")
    parser.add_argument("--source-steps", type=int, default=600, help="steps for each source adapter")
    parser.add_argument("--adapter-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("FUSIONLAB_DATA_DIR"))
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--reuse-sources", action="store_true", help="keep source adapters already in the workspace")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.source_steps, args.max_train_samples, args.max_eval_samples = 4, 4, 64, 32
        args.seeds, args.max_length = "1", 48

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(out / "quality-workspace").ensure()
    started = time.monotonic()
    sources = train_sources(workspace, args)
    rows = {}
    for task in args.tasks.split(","):
        scores = [run_target(workspace, task, int(seed), args) for seed in args.seeds.split(",")]
        rows[task] = {"single": [s for s, _ in scores], "fusion": [f for _, f in scores]}
        print(f"{task}: single {fmt(rows[task]['single'])}, fusion {fmt(rows[task]['fusion'])}", flush=True)

    lines = [
        f"Single-task adapter vs attention fusion over [target, {', '.join(SOURCES)}], all-MiniLM-L6-v2, "
        f"{args.steps} steps per stage, seeds {args.seeds}, main dev metric (%):",
        "",
        "| task | metric | single adapter | fusion | Δ | paper (BERT-base) single → fusion |",
        "|---|---|---|---|---|---|",
    ]
    for task, row in rows.items():
        delta = statistics.mean(row["fusion"]) - statistics.mean(row["single"])
        paper = PAPER.get(task)
        lines.append(
            f"| {task} | {get_task(task).main_metric} | {fmt(row['single'])} | {fmt(row['fusion'])} | {delta:+.1f} | "
            f"{f'{paper[0]} → {paper[1]}' if paper else '–'} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    stem = f"quality-{'-'.join(rows)}"
    (out / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
    result = {"args": vars(args), "sources": sources, "rows": rows, "seconds": time.monotonic() - started}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
