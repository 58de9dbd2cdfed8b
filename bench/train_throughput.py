"""Training throughput per stage, precision and batching, on real task data, measured side by side in one run.

For each stage (an adapter; attention fusion over ``--adapters`` frozen adapters) and precision (full fp32;
bf16 under ``torch.autocast``, what ``Trainer``'s ``bf16=True`` does), one optimisation step (forward, backward,
AdamW) is timed on real training batches of ``--task`` under three batchings:

* ``fixed``: every batch padded to the recipe's ``max_length`` (what a tokenizer with ``padding="max_length"`` gives);
* ``random``: a random batch padded to its own longest example (dynamic padding, random sampler);
* ``grouped``: batches of similar length padded to their own longest (dynamic padding with the length-grouped
  sampler, fusionlab's setting: ``TrainingConfig.group_by_length``).

Configurations are interleaved round-robin so that drift on a shared machine hits all alike; the median step of
each is reported with the real (non-padding) tokens per second. bf16 on a CPU without native bf16 (AVX512-BF16
or AMX) is emulated and very slow, so it gets fewer steps (``--bf16-steps``). Prints a table, writes JSON.

Usage: ``python bench/train_throughput.py [--task mnli] [--batch 32] [--max-length 128] [--adapters 4] [--steps 4]
[--bf16-steps 1] [--out bench/results/train_throughput.json]``
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnli")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--bf16-steps", type=int, default=1)
    parser.add_argument("--out", default="bench/results/train_throughput.json")
    args = parser.parse_args()
    data = batches(args.task, args.batch, args.max_length, args.steps)
    num_labels = get_task(args.task).num_labels
    # bf16 only on fusionlab's own batching: emulated, one step costs about a minute here
    configs = [(s, p, b) for s in ("adapter", "fusion") for p in ("fp32", "bf16") for b in data]
    configs = [c for c in configs if c[1] == "fp32" or c[2] == "grouped"]
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
        if not samples:
            continue
        real = statistics.mean(float(b["attention_mask"].sum()) for b in data[batching][: len(samples)])
        padded = statistics.mean(b["attention_mask"].numel() for b in data[batching][: len(samples)])
        median = statistics.median(samples)
        rows.append(
            {
                "stage": stage,
                "precision": precision,
                "batching": batching,
                "steps": len(samples),
                "median_step_s": round(median, 3),
                "real_tokens_per_s": round(real / median),
                "padding_share": round(1 - real / padded, 3),
            }
        )
    print(
        f"{args.task}, batch {args.batch}, max_length {args.max_length}, {torch.get_num_threads()} threads, "
        f"native bf16: {cpu_has_native_bf16()}\n"
    )
    print("| stage | precision | batching | median step (s) | real tokens/s | padding | steps |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['stage']} | {r['precision']} | {r['batching']} | {r['median_step_s']:.2f} | "
            f"{r['real_tokens_per_s']:,} | {r['padding_share']:.0%} | {r['steps']} |"
        )
    base = {(r["stage"], r["batching"]): r for r in rows if r["precision"] == "fp32"}
    for stage in ("adapter", "fusion"):
        fixed, grouped = base[(stage, "fixed")], base[(stage, "grouped")]
        bf16 = [r for r in rows if r["stage"] == stage and r["precision"] == "bf16" and r["batching"] == "grouped"]
        speed = (
            f"; bf16 vs fp32 (grouped) {grouped['median_step_s'] / bf16[0]['median_step_s']:.2f}× the speed"
            if bf16
            else ""
        )
        print(
            f"{stage}: grouped vs fixed padding {fixed['median_step_s'] / grouped['median_step_s']:.2f}× faster{speed}"
        )
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
