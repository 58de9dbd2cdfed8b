"""Training throughput per stage, precision and batching, on real task data, measured side by side in one run.

For each stage (an adapter; attention fusion over ``--adapters`` frozen adapters) and precision (full fp32;
bf16 under ``torch.autocast``, what ``Trainer``'s ``bf16=True`` does), one optimisation step (forward, backward,
AdamW) is timed on real training batches of each of ``--tasks``, at the batch size and ``max_length`` its pack
recipe trains with, under three batchings:

* ``fixed``: every batch padded to the recipe's ``max_length`` (what a tokenizer with ``padding="max_length"`` gives);
* ``random``: a random batch padded to its own longest example (dynamic padding, random sampler);
* ``grouped``: batches of similar length padded to their own longest (dynamic padding with the length-grouped
  sampler, fusionlab's setting: ``TrainingConfig.group_by_length``).

Configurations are interleaved round-robin so that drift on a shared machine hits all alike; the median step of
each is reported with the real (non-padding) tokens per second. bf16 on a CPU without native bf16 (AVX512-BF16
or AMX) is emulated and very slow, so it gets fewer steps (``--bf16-steps``). Prints a table, writes JSON.

Usage: ``python bench/train_throughput.py [--tasks mnli,rte,sst2] [--batch B] [--max-length L] [--adapters 4]
[--steps 4] [--bf16-steps 1] [--out bench/results/train_throughput.json]``
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch
from report import write_report

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig
from fusionlab.base_model import load_tokenizer
from fusionlab.data import get_task, load_split, make_collator, tokenize_dataset
from fusionlab.pack.recipe import ADAPTERS
from fusionlab.training.loop import cpu_has_native_bf16


def batches(task: str, batch: int, max_length: int, count: int) -> dict[str, list[dict]]:
    """``count`` real training batches of each batching (see the module docstring)."""
    spec = get_task(task)
    tokenizer = load_tokenizer()
    rows = tokenize_dataset(
        load_split(task, "train", max_samples=batch * count * 8, seed=0), spec, tokenizer, max_length
    )
    collate = make_collator(tokenizer)
    features = [{k: rows[i][k] for k in ("input_ids", "attention_mask", "labels")} for i in range(len(rows))]
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(features), generator=generator).tolist()
    random_batches = [collate([features[i] for i in order[j * batch : (j + 1) * batch]]) for j in range(count)]
    by_length = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    chunks = [by_length[j * batch : (j + 1) * batch] for j in range(len(by_length) // batch)]
    picked = torch.randperm(len(chunks), generator=generator)[:count].tolist()
    grouped = [collate([features[i] for i in chunks[j]]) for j in picked]
    fixed = []
    for b in random_batches:
        pad = max_length - b["input_ids"].shape[1]
        fixed.append(
            {
                "input_ids": torch.nn.functional.pad(b["input_ids"], (0, pad), value=tokenizer.pad_token_id),
                "attention_mask": torch.nn.functional.pad(b["attention_mask"], (0, pad), value=0),
                "labels": b["labels"],
            }
        )
    return {"fixed": fixed, "random": random_batches, "grouped": grouped}


def build(stage: str, adapters: int, num_labels: int) -> tuple[FusionModel, list[str]]:
    torch.manual_seed(0)
    names = [f"a{i}" for i in range(adapters if stage == "fusion" else 1)]
    configs = {n: AdapterConfig(adapter_size=64, task_name=n, num_labels=num_labels) for n in names}
    fusion = FusionConfig(adapter_names=names, num_labels=num_labels) if stage == "fusion" else None
    model = FusionModel(ModelConfig(num_labels=num_labels), fusion, AdapterManager(384, configs))
    with torch.no_grad():
        for param in model.adapter_manager.parameters():
            param.normal_(std=0.05)
    if stage == "fusion":
        model.train_fusion_only()
    else:
        model.train_adapter_only(names[0])
    return model.train(), names


def step(model: FusionModel, names: list[str], batch: dict, optimizer, precision: str) -> float:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    start = time.perf_counter()
    with autocast:
        loss = model(**batch, adapter_names=names).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def shape(task: str, args: argparse.Namespace) -> tuple[int, int]:
    """The batch size and ``max_length`` a task trains with: the pack recipe's (what the pack build runs), unless
    ``--batch`` or ``--max-length`` sets one for every task."""
    recipe = next((r for r in ADAPTERS if r.task == task), None)
    batch = args.batch or (recipe.batch_size if recipe else 32)
    return batch, args.max_length or (recipe.max_length if recipe else 128)


def measure(task: str, args: argparse.Namespace) -> list[dict]:
    """Every configuration's median step on ``task``'s real training batches, interleaved round-robin."""
    batch, max_length = shape(task, args)
    data = batches(task, batch, max_length, args.steps)
    num_labels = get_task(task).num_labels
    # bf16 only on fusionlab's own batching: emulated, one step costs about a minute here
    configs = [(s, p, b) for s in ("adapter", "fusion") for p in ("fp32", "bf16") for b in data]
    configs = [c for c in configs if c[1] == "fp32" or (c[2] == "grouped" and args.bf16_steps > 0)]
    models = {s: build(s, args.adapters, num_labels) for s in ("adapter", "fusion")}
    optimizers = {
        s: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for s, (m, _) in models.items()
    }
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for s, (model, names) in models.items():  # warm-up in fp32 (an emulated bf16 step is too slow to waste)
        step(model, names, data["grouped"][0], optimizers[s], "fp32")
    for i in range(args.steps):
        for config in configs:
            stage, precision, batching = config
            if precision == "bf16" and i >= args.bf16_steps:
                continue
            model, names = models[stage]
            times[config].append(step(model, names, data[batching][i], optimizers[stage], precision))
    rows = []
    for (stage, precision, batching), samples in times.items():
        real = statistics.mean(float(b["attention_mask"].sum()) for b in data[batching][: len(samples)])
        padded = statistics.mean(b["attention_mask"].numel() for b in data[batching][: len(samples)])
        median = statistics.median(samples)
        rows.append(
            {
                "task": task,
                "batch": batch,
                "max_length": max_length,
                "stage": stage,
                "precision": precision,
                "batching": batching,
                "steps": len(samples),
                "median_step_s": round(median, 3),
                "real_tokens_per_s": round(real / median),
                "padding_share": round(1 - real / padded, 3),
            }
        )
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{torch.get_num_threads()} threads, native bf16: {cpu_has_native_bf16()}\n")
    print(
        "| task (batch × max_length) | stage | precision | batching | median step (s) | real tokens/s | padding | steps |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['task']} ({r['batch']} × {r['max_length']}) | {r['stage']} | {r['precision']} | {r['batching']} | "
            f"{r['median_step_s']:.2f} | {r['real_tokens_per_s']:,} | {r['padding_share']:.0%} | {r['steps']} |"
        )
    print()
    for task in dict.fromkeys(r["task"] for r in rows):
        for stage in ("adapter", "fusion"):
            print(f"{task} {stage}: {speedups([r for r in rows if r['task'] == task and r['stage'] == stage])}")


def speedups(rows: list[dict]) -> str:
    """Grouped against fixed padding, and bf16 against fp32 on grouped batches, for one task and stage."""
    by = {(r["precision"], r["batching"]): r["median_step_s"] for r in rows}
    text = f"grouped vs fixed padding {by[('fp32', 'fixed')] / by[('fp32', 'grouped')]:.2f}× faster"
    if ("bf16", "grouped") in by:
        text += f"; bf16 vs fp32 (grouped) {by[('fp32', 'grouped')] / by[('bf16', 'grouped')]:.2f}× the speed"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mnli", help="comma-separated tasks, e.g. mnli,rte,sst2")
    parser.add_argument("--batch", type=int, help="batch size for every task (default: each task's pack recipe)")
    parser.add_argument("--max-length", type=int, help="max_length for every task (default: the pack recipe's)")
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--bf16-steps", type=int, default=1, help="bf16 steps per stage (0: no bf16 rows)")
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    args = parser.parse_args()
    rows = [row for task in args.tasks.split(",") for row in measure(task.strip(), args)]
    print_table(rows)
    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "native_bf16": cpu_has_native_bf16(),
        },
        "settings": vars(args),
        "results": rows,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
