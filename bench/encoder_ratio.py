"""A fusion run's training throughput as a share of the frozen encoder's own forward+backward throughput.

Training a fusion cannot be cheaper than one forward and one backward pass through the frozen encoder: the
fusion layers sit in every layer, so the gradient flows through all of them. This script measures both, side by
side on the same real batches (length-grouped, dynamic padding, as fusionlab trains), and reports the ratio
fusion ÷ encoder in real tokens per second; the issue "Adapters that learn" asks for ≥ 0.6 on a GPU.

* ``encoder``: the bare encoder, its weights frozen, the word embeddings made to require a gradient (so the
  backward pass runs through every layer, as it must for any adapter method), a linear head on [CLS];
* ``fusion``: :class:`~fusionlab.FusionModel` with ``--adapters`` adapters in every layer and attention fusion,
  trained as stage 2 trains it (``train_fusion_only``).

Each step is forward, backward and AdamW on the trainable parameters; the two are interleaved round-robin so
drift hits both alike, and the median step is reported. ``--device auto`` takes a GPU when there is one, with
bf16 autocast where it is supported (what ``mixed_precision="auto"`` gives); on a CPU, full precision.

Usage: ``python bench/encoder_ratio.py [--device auto] [--task mnli] [--batch 32] [--max-length 128]
[--adapters 4] [--steps 10] [--out bench/results/encoder_ratio.json]`` (``--quick``: 2 steps of batch 8).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch
from report import write_report
from torch import nn
from train_throughput import batches, build

from fusionlab.base_model import load_encoder
from fusionlab.data import get_task
from fusionlab.training.loop import resolve_precision


class FrozenEncoderStep(nn.Module):
    """The floor: forward and backward through the frozen encoder, only a head trained."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.encoder = load_encoder().requires_grad_(False)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask, labels, **_) -> torch.Tensor:
        embeds = self.encoder.get_input_embeddings()(input_ids).detach().requires_grad_(True)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        return nn.functional.cross_entropy(self.head(hidden[:, 0]), labels)


def pick_device(asked: str) -> tuple[torch.device, torch.dtype | None]:
    """The device, and the autocast dtype a run trains in there (what ``mixed_precision="auto"`` resolves to;
    None: full precision)."""
    if asked == "auto":
        asked = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(asked)
    precision = resolve_precision("auto") if device.type == "cuda" else "no"
    return device, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def timed_step(loss_of, batch: dict, optimizer, device: torch.device, dtype: torch.dtype | None) -> float:
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast:
        loss = loss_of(batch)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda, cuda:1 …")
    parser.add_argument("--task", default="mnli")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--adapters", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="2 steps of batch 8: checks the script runs")
    parser.add_argument("--out", default="bench/results/encoder_ratio.json")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.steps = 8, 2
    if not (1 <= args.steps <= 1000 and 1 <= args.batch <= 4096 and 1 <= args.adapters <= 64):
        parser.error("--steps must be 1-1000, --batch 1-4096 and --adapters 1-64")
    device, dtype = pick_device(args.device)
    num_labels = get_task(args.task).num_labels
    data = [
        {k: v.to(device) for k, v in b.items()}
        for b in batches(args.task, args.batch, args.max_length, args.steps + 1)["grouped"]
    ]

    encoder = FrozenEncoderStep(num_labels).to(device).train()
    fusion, names = build("fusion", args.adapters, num_labels)
    fusion = fusion.to(device)
    stages = {
        "encoder": (lambda b: encoder(**b), encoder),
        "fusion": (lambda b: fusion(**b, adapter_names=names).loss, fusion),
    }
    optimizers = {
        name: torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-4)
        for name, (_, module) in stages.items()
    }
    times: dict[str, list[float]] = {name: [] for name in stages}
    for name, (loss_of, _) in stages.items():  # warm-up (kernels, allocator) on the first batch
        timed_step(loss_of, data[0], optimizers[name], device, dtype)
    for batch in data[1:]:
        for name, (loss_of, _) in stages.items():
            times[name].append(timed_step(loss_of, batch, optimizers[name], device, dtype))

    real_tokens = statistics.mean(float(b["attention_mask"].sum()) for b in data[1:])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append({"stage": name, "median_step_s": median, "real_tokens_per_s": real_tokens / median})
    ratio = rows[1]["real_tokens_per_s"] / rows[0]["real_tokens_per_s"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    precision = str(dtype).removeprefix("torch.") if dtype else "fp32"
    print(f"{args.task}, batch {args.batch}, max_length {args.max_length}, {where}, {precision}, {args.steps} steps\n")
    print("| stage | median step (s) | real tokens/s |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['stage']} | {row['median_step_s']:.3f} | {row['real_tokens_per_s']:,.0f} |")
    print(
        f"\nfusion over {args.adapters} adapters ÷ frozen encoder forward+backward: {ratio:.2f} (goal on a GPU: ≥ 0.6)"
    )
    report = {
        "machine": {
            "device": where,
            "precision": precision,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "settings": vars(args),
        "results": rows,
        "ratio": ratio,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
