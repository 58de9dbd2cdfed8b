"""What a fusion costs, measured on the real model: parameters, bytes on disk and latency.

The numbers answer the paper's efficiency argument for this particular workspace: the frozen encoder is shared,
each task adds a small adapter and head, and fusion adds one layer per transformer layer. Latency is measured,
not estimated, because the batched adapters and the re-associated attention make fusion cheaper than a naive
count of matrix products suggests.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.inference import Predictor
from fusionlab.workspace import Workspace

DEFAULT_REPEATS = 20
WARMUP_RUNS = 3
FALLBACK_TEXT = "A short sentence to time the model with."


@dataclass(frozen=True)
class ParameterReport:
    """Parameter counts of a loaded fusion model, split the way the paper argues about them."""

    base: int
    adapters: dict[str, int]
    fusion: int
    adapter_heads: int
    fusion_head: int
    trainable: int
    total: int

    @property
    def added(self) -> int:
        """Everything on top of the frozen encoder: adapters, fusion layers and every task head."""
        return sum(self.adapters.values()) + self.fusion + self.adapter_heads + self.fusion_head

    @property
    def trainable_share(self) -> float:
        """Share of all parameters that fusion training updates (fusion layers and the target head)."""
        return self.trainable / self.total

    @property
    def reduction_factor(self) -> float:
        """How many times fewer parameters than fine-tuning the whole encoder (base / added)."""
        return self.base / self.added


def parameter_report(predictor: Predictor) -> ParameterReport:
    """Count the parameters of the predictor's model (``FusionModel.parameter_breakdown``).

    ``trainable`` is what fusion training updates (the fusion layers and the target head, plus the adapters when
    the fusion config keeps them learning), not what ``requires_grad`` says now: the predictor's model is an
    inference snapshot, in which nothing is trainable."""
    model = predictor.model
    breakdown = model.parameter_breakdown()
    heads = breakdown["heads"]
    fusion_head = sum(n for name, n in heads.items() if name.startswith("fusion:"))
    trainable = breakdown["fusion"] + fusion_head
    if model.fusion_config is not None and not model.fusion_config.freeze_adapters_during_fusion:
        trainable += sum(breakdown["adapters"].values())
    return ParameterReport(
        base=breakdown["base"],
        adapters=dict(breakdown["adapters"]),
        fusion=breakdown["fusion"],
        adapter_heads=sum(heads.values()) - fusion_head,
        fusion_head=fusion_head,
        trainable=trainable,
        total=breakdown["total"],
    )


@dataclass(frozen=True)
class CheckpointSize:
    """Bytes on disk of one checkpoint directory (weights and metadata)."""

    name: str
    kind: str  # "adapter" or "fusion"
    path: str
    bytes: int


def _directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def checkpoint_sizes(workspace: Workspace, predictor: Predictor) -> list[CheckpointSize]:
    """Size of the fusion checkpoint and of each adapter checkpoint it needs (the encoder is not counted)."""
    fusion_dir = workspace.fusion_dir(predictor.info.name)
    sizes = [CheckpointSize(predictor.info.name, "fusion", str(fusion_dir), _directory_bytes(fusion_dir))]
    for name in predictor.info.adapters:
        path = workspace.adapter_dir(name)
        sizes.append(CheckpointSize(name, "adapter", str(path), _directory_bytes(path)))
    return sizes


@dataclass(frozen=True)
class LatencyReport:
    """Median forward-pass latency (ms, batch of one, warm) of the encoder alone, one adapter and fusion."""

    text: str
    tokens: int
    repeats: int
    threads: int
    base_ms: float
    single_adapter: str
    single_ms: float
    fusion_adapters: tuple[str, ...]  # fusion_ms[k] fuses the first k + 1 of these
    fusion_ms: tuple[float, ...]


def _median_ms(runs: list[Callable[[], object]], repeats: int, warmup: int) -> list[float]:
    """Median wall time of each callable, in ms.

    The callables take turns (one timed call of each per round) rather than running one after the other, so
    a burst of other work on the machine slows every configuration alike instead of whichever ran during it.
    """
    for run in runs:
        for _ in range(warmup):
            run()
    timings: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, times in zip(runs, timings):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    return [1000.0 * statistics.median(times) for times in timings]


def measure_latency(predictor: Predictor, repeats: int = DEFAULT_REPEATS, warmup: int = WARMUP_RUNS) -> LatencyReport:
    """Time the encoder alone, the target adapter alone, and fusion over the first 1…N adapters.

    Runs under the predictor's lock so that another session's request cannot land inside a timing. The input
    is the task's first example (a short sentence), so the numbers show per-layer overhead, not padding.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be at least 1 and warmup at least 0, got {repeats} and {warmup}")
    info = predictor.info
    examples = examples_for(info.task.name)
    text, pair = (examples[0].text, examples[0].pair) if examples else (FALLBACK_TEXT, None)
    if info.task.is_pair and pair is None:
        pair = FALLBACK_TEXT
    model = predictor.model
    single = info.target if info.has_target_adapter else info.adapters[0]
    with predictor.lock, torch.inference_mode():
        inputs = predictor.encode(text, pair).inputs
        runs: list[Callable[[], object]] = [
            lambda: model.base_model(**inputs),
            lambda: model(**inputs, adapter_names=[single]),
        ]
        runs += [
            lambda k=k: model(**inputs, adapter_names=list(info.adapters[:k]), force_fusion=True)
            for k in range(1, len(info.adapters) + 1)
        ]
        base_ms, single_ms, *fusion_ms = _median_ms(runs, repeats, warmup)
    return LatencyReport(
        text=text if pair is None else f"{text} / {pair}",
        tokens=int(inputs["attention_mask"].sum()),
        repeats=repeats,
        threads=torch.get_num_threads(),
        base_ms=base_ms,
        single_adapter=single,
        single_ms=single_ms,
        fusion_adapters=info.adapters,
        fusion_ms=tuple(fusion_ms),
    )
