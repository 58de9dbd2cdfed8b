"""How much slower is a forward pass with Adapter Fusion than the bare encoder?

Measures, on the bundled all-MiniLM-L6-v2 (6 layers, hidden 384), the forward time of: the base encoder alone,
one adapter, attention fusion over N = 1, 2, 3, 4, 8 adapters, and weighted and average fusion over 8 adapters,
for a single short sequence (1 x 32 tokens) and a batch (32 x 64 tokens), and prints each time as a ratio to the
base encoder measured in the same run.

Method, and why:

* **Median** of many samples, not the mean: timing noise on a shared CPU is one-sided (interrupts, other
  processes, page faults, frequency changes only ever make a call slower), and the median ignores those
  outliers where the mean would absorb them.
* **Interleaved repeats**: each repeat times every configuration once, in a freshly shuffled order, instead of
  timing one configuration many times and then the next. Slow drift (thermal throttling, a neighbour's job
  starting) then hits all configurations alike and cancels in the ratios, instead of penalising whichever
  configuration happened to run last.
* **CPU time** is recorded beside wall time (``cpu_ratio_to_base`` in the JSON): on a machine shared with other
  jobs, time spent descheduled inflates wall time but not CPU time. With several threads CPU time also counts
  threads spinning at a barrier, so it is a cross-check, not a replacement: wall time is what users wait.
* **Threads**: all available CPUs by default. On a machine shared with other jobs prefer ``--threads 1``:
  a multi-threaded op waits at its barrier for a thread that was descheduled, a penalty paid per op, so the
  configuration with more (smaller) ops looks slower than it is.
* **Warm-up** calls first (one-off allocations, oneDNN kernel selection; a snapshot's stacks and folds).
* **Snapshots**: the ``…, snapshot`` rows are the same models made inference snapshots, which build their stacked
  adapter weights and attention's folded products once (the dashboard's predictors are snapshots); training
  rebuilds them in every call, which the plain rows measure.
* Every adapter has random, non-zero up-projections, so no code path can skip work for an untrained adapter.
  All tokens are real (attention mask all ones). Everything runs in eval mode under ``torch.inference_mode()``.
  Attention fusion is single-head (FusionConfig's default, as in AdapterHub). The base is the bare encoder;
  every other configuration is a whole ``FusionModel`` call, so its ratio includes pooling and the head.

Usage::

    python bench/fusion_overhead.py [--repeats N] [--out bench/results/fusion_overhead.json]
                                    [--adapter-size R [R ...]] [--threads T] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import transformers
from report import write_report
from torch import nn

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig
from fusionlab.base_model import load_encoder
from fusionlab.inference_snapshot import freeze_for_inference

SHAPES = ((1, 32), (32, 64))  # (batch, tokens)
DEFAULT_ADAPTER_SIZE = 24  # reduction factor 16 on hidden 384: the AdapterHub default
SAMPLE_SECONDS = 0.02  # each sample averages enough calls to last about this long (timer noise << sample)


@dataclass(frozen=True)
class Config:
    """One thing to time: the bare encoder, one adapter, or a fusion method over N adapters."""

    name: str
    method: str | None  # None: no fusion
    num_adapters: int  # 0: bare encoder
    snapshot: bool = False  # an inference snapshot (fusionlab.inference_snapshot), as the dashboard answers with


CONFIGS = (
    Config("base", None, 0),
    Config("adapter", None, 1),
    *(Config(f"attention N={n}", "attention", n) for n in (1, 2, 3, 4, 8)),
    Config("weighted N=8", "weighted", 8),
    Config("average N=8", "average", 8),
    *(Config(f"attention N={n}, snapshot", "attention", n, snapshot=True) for n in (3, 8)),
    Config("weighted N=8, snapshot", "weighted", 8, snapshot=True),
)


# -- building what is timed ----------------------------------------------------------------------------------
def random_adapters(hidden: int, layers: int, num: int, size: int) -> AdapterManager:
    """``num`` frozen adapters ``a0``, ``a1``, ... with random (non-zero) up-projections."""
    configs = {f"a{i}": AdapterConfig(adapter_size=size, task_name=f"a{i}") for i in range(num)}
    manager = AdapterManager(hidden, configs, freeze_adapters=True, num_layers=layers)
    with torch.no_grad():
        for param in manager.parameters():
            param.normal_(std=0.02)
    return manager


def build_runner(config: Config, encoder: nn.Module, adapter_size: int) -> Callable[[dict], object]:
    """A function of the encoder inputs that runs ``config`` (on its own copy of the encoder)."""
    if config.num_adapters == 0:
        return lambda inputs: encoder(**inputs)
    hidden, layers = int(encoder.config.hidden_size), int(encoder.config.num_hidden_layers)
    manager = random_adapters(hidden, layers, config.num_adapters, adapter_size)
    names = manager.names
    fusion = None if config.method is None else FusionConfig(fusion_method=config.method, adapter_names=names)
    model = FusionModel(ModelConfig(), fusion, manager, encoder=copy.deepcopy(encoder)).eval()
    if config.snapshot:
        freeze_for_inference(model)
    force = config.method is not None  # fusion for N=1 too
    return lambda inputs: model(**inputs, adapter_names=names, force_fusion=force)


def make_inputs(batch: int, tokens: int, vocab_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 1000 + tokens)
    input_ids = torch.randint(1000, vocab_size, (batch, tokens), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


# -- timing ----------------------------------------------------------------------------------------------------
class Sample(NamedTuple):
    wall: float  # seconds per call, wall clock: what a user waits
    cpu: float  # seconds per call, CPU time of this process (all threads): less sensitive to a busy machine


def time_calls(run: Callable[[dict], object], inputs: dict, number: int) -> Sample:
    """Mean wall and CPU seconds per call over ``number`` back-to-back calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(number):
        run(inputs)
    return Sample((time.perf_counter() - wall) / number, (time.process_time() - cpu) / number)


def calls_per_sample(run: Callable[[dict], object], inputs: dict) -> int:
    """How many calls of ``run`` (the fastest configuration) make one sample last about SAMPLE_SECONDS."""
    one = min(time_calls(run, inputs, 1).wall for _ in range(3))
    return max(1, round(SAMPLE_SECONDS / one))


def measure(
    runners: dict[str, Callable], inputs: dict, repeats: int, warmup: int, rng: random.Random
) -> dict[str, list[Sample]]:
    """Per configuration, one sample per repeat; each repeat runs every configuration once, in a shuffled order."""
    samples: dict[str, list[Sample]] = {name: [] for name in runners}
    order = list(runners)
    with torch.inference_mode():
        number = calls_per_sample(runners["base"], inputs)
        for run in runners.values():
            for _ in range(warmup * number):  # untimed: a warm-up of 0 calls is allowed (--warmup 0)
                run(inputs)
        for _ in range(repeats):
            rng.shuffle(order)
            for name in order:
                samples[name].append(time_calls(runners[name], inputs, number))
    return samples


def summarise(samples: dict[str, list[Sample]], base: str = "base") -> dict[str, dict]:
    """Median wall time (and quartiles) in ms, and the medians' ratios to the base's medians of the same run."""
    base_wall = statistics.median(s.wall for s in samples[base])
    base_cpu = statistics.median(s.cpu for s in samples[base])
    rows = {}
    for name, values in samples.items():
        wall = [s.wall for s in values]
        q1, _, q3 = statistics.quantiles(wall, n=4) if len(wall) > 1 else (wall[0],) * 3
        median, cpu = statistics.median(wall), statistics.median(s.cpu for s in values)
        rows[name] = {
            "median_ms": 1e3 * median,
            "q1_ms": 1e3 * q1,
            "q3_ms": 1e3 * q3,
            "ratio_to_base": median / base_wall,
            "cpu_median_ms": 1e3 * cpu,
            "cpu_ratio_to_base": cpu / base_cpu,
        }
    return rows


# -- reporting ---------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: how busy the machine was (other jobs skew timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": available_cpus(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "platform": platform.platform(),
    }


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| config | shape | adapter size | median ms | × base | × base (CPU time) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['batch']}×{r['tokens']} | {r['adapter_size'] or '-'} "
            f"| {r['median_ms']:.2f} | {r['ratio_to_base']:.2f} | {r['cpu_ratio_to_base']:.2f} |"
        )
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="interleaved samples per configuration (30)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up samples per configuration (3)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/fusion_overhead.json"))
    parser.add_argument(
        "--adapter-size",
        type=int,
        nargs="+",
        default=[DEFAULT_ADAPTER_SIZE],
        help=f"bottleneck size(s) of the adapters; several sizes are measured one after the other "
        f"(default {DEFAULT_ADAPTER_SIZE}, i.e. reduction factor 16)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: CPUs available)")
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke test that ends in < 60 s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 30
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.repeats < 1 or args.warmup < 0 or any(s < 1 for s in args.adapter_size):
        parser.error("--repeats and --adapter-size must be positive, --warmup non-negative")
    return args


def run_size(encoder: nn.Module, adapter_size: int, args: argparse.Namespace, rng: random.Random) -> list[dict]:
    """Time every configuration at every shape with adapters of one size; one result row per pair."""
    runners = {c.name: build_runner(c, encoder, adapter_size) for c in CONFIGS}
    by_name = {c.name: c for c in CONFIGS}
    results = []
    for batch, tokens in SHAPES:
        inputs = make_inputs(batch, tokens, int(encoder.config.vocab_size))
        samples = measure(runners, inputs, args.repeats, args.warmup, rng)
        for name, row in summarise(samples).items():
            config = by_name[name]
            results.append(
                {
                    **asdict(config),
                    "config": name,
                    "batch": batch,
                    "tokens": tokens,
                    "adapter_size": adapter_size if config.num_adapters else None,
                    **row,
                }
            )
    order = {c.name: i for i, c in enumerate(CONFIGS)}
    return sorted(results, key=lambda r: ((r["batch"], r["tokens"]), order[r["config"]]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or available_cpus())
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    encoder = load_encoder().eval()
    started, load_before = time.perf_counter(), load_average()
    results = []
    for size in args.adapter_size:
        results.extend(run_size(encoder, size, args, rng))
    report = {
        "machine": {**machine_info(), "load_average_before": load_before, "load_average_after": load_average()},
        "settings": {
            "model": "sentence-transformers/all-MiniLM-L6-v2 (bundled)",
            "threads": torch.get_num_threads(),
            "repeats": args.repeats,
            "warmup": args.warmup,
            "adapter_sizes": args.adapter_size,
            "quick": args.quick,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "results": results,
    }
    print(markdown_table(results))
    write_report(args.out, report, announce=False)
    print(f"\nwrote {args.out} ({report['settings']['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
