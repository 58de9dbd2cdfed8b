"""Peak memory and time of one fusion training step, with and without activation (gradient) checkpointing.

One attention-fusion step (forward + backward + AdamW) over N trained-looking adapters on the bundled
all-MiniLM-L6-v2, at ``--batch`` × ``--tokens`` (default 32 × 128, every position a real token). Each mode runs
in a fresh process, so one mode's allocations never hide the other's peak. Memory: on a GPU the allocator's
peak (``torch.cuda.max_memory_allocated``) above what the loaded model holds; on a CPU the growth of the
process's peak resident set (``ru_maxrss``) during the steps, which includes the allocator's slack, so compare
the two rows of one run rather than the absolute numbers. Prints a Markdown table and writes JSON.

Usage: ``python bench/grad_checkpointing.py [--batch 32] [--tokens 128] [--adapters 4] [--steps 3]
[--out bench/results/grad_checkpointing.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

from report import write_report


def one_mode(checkpointing: bool, batch: int, tokens: int, adapters: int, steps: int) -> dict:
    """Run in a child process: build the model, take ``steps`` steps, report peak memory and the median time."""
    import torch

    from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig

    torch.manual_seed(0)
    names = [f"a{i}" for i in range(adapters)]
    configs = {name: AdapterConfig(adapter_size=64) for name in names}
    model = FusionModel(ModelConfig(), FusionConfig(adapter_names=names), AdapterManager(384, configs))
    with torch.no_grad():
        for param in model.adapter_manager.parameters():
            param.normal_(std=0.05)
    model.train_fusion_only()
    model.train()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    if checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(1000, 20000, (batch, tokens), device=device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (batch,))}
    inputs["labels"] = inputs["labels"].to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model(**inputs, adapter_names=names).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
        measure = "torch.cuda.max_memory_allocated above the loaded model"
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
        measure = "growth of the process's peak RSS (ru_maxrss) during the steps"
    times.sort()
    return {
        "checkpointing": checkpointing,
        "device": str(device),
        "peak_mib": round(peak_mib, 1),
        "measure": measure,
        "median_step_s": round(times[len(times) // 2], 3),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="bench/results/grad_checkpointing.json")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_mode(args.child == "on", args.batch, args.tokens, args.adapters, args.steps)))
        return
    rows = []
    for mode in ("off", "on"):
        command = [sys.executable, __file__, "--child", mode, "--batch", str(args.batch), "--tokens", str(args.tokens)]
        command += ["--adapters", str(args.adapters), "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    off, on = rows
    print(
        f"One attention-fusion step over {args.adapters} adapters, {args.batch} × {args.tokens} tokens, {off['device']}"
    )
    print(f"memory: {off['measure']}\n")
    print("| activation checkpointing | peak memory (MiB) | median step (s) |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {'on' if row['checkpointing'] else 'off'} | {row['peak_mib']:.0f} | {row['median_step_s']:.2f} |")
    ratio = on["peak_mib"] / off["peak_mib"] if off["peak_mib"] > 0 else float("nan")
    slower = on["median_step_s"] / off["median_step_s"]
    print(f"\ncheckpointing: {ratio:.2f}× the memory, {slower:.2f}× the time per step (measured in this run)")
    report = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "shape": {"batch": args.batch, "tokens": args.tokens, "adapters": args.adapters, "steps": args.steps},
        "results": rows,
        "memory_ratio_on_off": ratio,
        "time_ratio_on_off": slower,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
