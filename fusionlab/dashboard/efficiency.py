"""What a fusion costs, measured on the real model: parameters, bytes on disk and latency.

The numbers answer the paper's efficiency argument for this particular workspace: the frozen encoder is shared,
each task adds a small adapter and head, and fusion adds a layer in every transformer layer, whose size the page
states from the model (attention fusion's query, key and value projections are several times one adapter).
Latency is measured, not estimated, because the batched adapters and the re-associated attention make fusion
cheaper than a naive count of matrix products suggests; every configuration is timed many times, and the spread
is reported with the median.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusionlab.dashboard.examples import examples_for
from fusionlab.dashboard.inference import Predictor
from fusionlab.prediction import encode_input
from fusionlab.workspace import Workspace

DEFAULT_REPEATS = 20
WARMUP_RUNS = 3
FALLBACK_TEXT = "A short sentence to time the model with."
LATENCY_LENGTHS = (32, 64, 128, 256, 512)
"""Input lengths (tokens) the Efficiency page offers to time, besides the fusion's own ``max_length``."""
DEFAULT_LATENCY_TOKENS = 128
"""A sentence pair or a short review: the default timed length (the fusion's ``max_length`` if that is shorter)."""


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
    num_layers: int = 1
    """Transformer layers, each with one fusion layer (``fusion`` counts them all)."""
    method: str = "attention"

    @property
    def added(self) -> int:
        """Everything on top of the frozen encoder: adapters, fusion layers and every task head."""
        return sum(self.adapters.values()) + self.fusion + self.adapter_heads + self.fusion_head

    @property
    def trainable_share(self) -> float:
        """Share of all parameters that fusion training updates (fusion layers and the target head)."""
        return self.trainable / self.total

    @property
    def base_over_trained(self) -> float:
        """How many times more parameters full fine-tuning of the encoder trains than fusion training does
        (encoder / trained: fusion layers and target head)."""
        return self.base / self.trainable

    @property
    def base_over_added(self) -> float:
        """How many times larger the encoder is than everything this fusion adds to it (encoder / added:
        adapters, their heads, fusion layers, fusion head), trained now or before."""
        return self.base / self.added

    @property
    def fusion_per_layer(self) -> float:
        """Parameters of the fusion layer in one transformer layer."""
        return self.fusion / max(1, self.num_layers)

    @property
    def mean_adapter(self) -> float:
        """Parameters of one adapter (all its layers), the mean over the fused adapters."""
        return sum(self.adapters.values()) / len(self.adapters) if self.adapters else 0.0

    @property
    def fusion_over_adapter(self) -> float:
        """How many adapters' worth of parameters the fusion layers are (all layers, vs :attr:`mean_adapter`)."""
        return self.fusion / self.mean_adapter if self.mean_adapter else float("inf")


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
        num_layers=predictor.info.num_layers,
        method=predictor.info.method,
    )


def count_text(n: float) -> str:
    """A parameter count as people read it: ``22.71 M``, ``298 k``, ``36``."""
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k" if n >= 1e3 else f"{n:.0f}"


def _times(ratio: float) -> str:
    """``8.9×`` for a ratio above one; a share (``0.4 %``) below it, where "0.0×" would say nothing."""
    return f"{ratio:.1f}×" if ratio >= 1 else f"{ratio:.1%} of"


def parameter_summary(report: ParameterReport) -> str:
    """What fusion adds, in numbers from the model: the size of one adapter and of the fusion layers, per
    transformer layer and in all, and how they compare (attention fusion is several adapters' worth, not "one
    small layer")."""
    sizes = set(report.adapters.values())
    one = "one adapter" if len(sizes) <= 1 else "the mean adapter"
    per_layer = count_text(report.fusion_per_layer)
    return (
        f"The encoder ({count_text(report.base)} parameters) stays frozen and is shared by every task; each task adds "
        f"an adapter ({one}: {count_text(report.mean_adapter)} parameters over its {report.num_layers} layers, "
        f"{report.mean_adapter / report.base:.1%} of the encoder) and a classification head. "
        f"{report.method.capitalize()} fusion adds a fusion layer to each of the {report.num_layers} transformer "
        f"layers ({per_layer} parameters each, {count_text(report.fusion)} in all): "
        f"{_times(report.fusion_over_adapter)} {one}."
    )


def trained_parts(report: ParameterReport) -> str:
    """Which parameters fusion training updates, in words (the adapters too when the fusion kept them learning)."""
    if report.trainable == report.fusion + report.fusion_head:
        return "fusion layers + target head"
    return "fusion layers + target head + adapters"


def reduction_summary(report: ParameterReport) -> str:
    """The two honest ways to compare with full fine-tuning, each saying which parameters it counts."""
    return (
        f"Full fine-tuning would train the encoder's {count_text(report.base)} parameters: "
        f"{report.base_over_trained:.1f}× the {count_text(report.trainable)} that fusion training updates "
        f"({trained_parts(report)}). Counting everything this fusion adds to the encoder "
        f"({count_text(report.added)}: {len(report.adapters)} adapters and their heads, trained beforehand, plus the "
        f"fusion layers and head), the encoder is {report.base_over_added:.1f}× as large."
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


def size_summary(sizes: list[CheckpointSize]) -> str | None:
    """The fusion checkpoint's size against one adapter checkpoint's (the mean of those it needs), in words."""
    fusion = [s.bytes for s in sizes if s.kind == "fusion"]
    adapters = [s.bytes for s in sizes if s.kind == "adapter"]
    if not fusion or not adapters:
        return None
    one = sum(adapters) / len(adapters)
    mean = ", the mean" if max(adapters) > 1.05 * min(adapters) else ""  # a bigger bottleneck, not metadata
    return (
        f"The fusion checkpoint ({fusion[0] / 1e6:.2f} MB: fusion layers and target head) is "
        f"{_times(fusion[0] / one)} one adapter checkpoint ({one / 1e6:.2f} MB{mean}); "
        f"with the {len(adapters)} adapters it needs, this fusion takes {(fusion[0] + sum(adapters)) / 1e6:.2f} MB "
        "besides the shared encoder."
    )


@dataclass(frozen=True)
class Timing:
    """The wall times (ms) of one configuration's timed runs, summarised: median, quartiles and extremes."""

    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ms = 1000.0 * np.asarray(seconds, dtype=float)
        q1, median, q3 = np.percentile(ms, [25, 50, 75])
        return cls(float(median), float(q1), float(q3), float(ms.min()), float(ms.max()))

    def text(self) -> str:
        """``12.3 ms (middle half 11.9–12.8, all 11.5–15.0)``."""
        return f"{self.median:.1f} ms (middle half {self.q1:.1f}–{self.q3:.1f}, all {self.low:.1f}–{self.high:.1f})"


@dataclass(frozen=True)
class LatencyReport:
    """Forward-pass latency (batch of one, warm) of the encoder alone, one adapter and fusion over 1…N adapters,
    each a :class:`Timing` over ``repeats`` timed runs of one input of ``tokens`` tokens."""

    text: str
    tokens: int
    repeats: int
    threads: int
    base: Timing
    single_adapter: str
    single: Timing
    fusion_adapters: tuple[str, ...]  # fusion[k] fuses the first k + 1 of these
    fusion: tuple[Timing, ...]

    @property
    def base_ms(self) -> float:
        return self.base.median

    @property
    def single_ms(self) -> float:
        return self.single.median

    @property
    def fusion_ms(self) -> tuple[float, ...]:
        """Median latency of fusion over the first 1, 2, … adapters."""
        return tuple(t.median for t in self.fusion)

    def rows(self) -> list[dict[str, object]]:
        """One table row per configuration: median, quartiles and extremes (ms)."""
        named = [("encoder alone", self.base), (f"{self.single_adapter} adapter alone", self.single)]
        named += [
            (f"fusion over {k} adapter{'s' if k > 1 else ''} (+ {name})", timing)
            for k, (name, timing) in enumerate(zip(self.fusion_adapters, self.fusion), start=1)
        ]
        return [
            {"configuration": name, "median": t.median, "q1": t.q1, "q3": t.q3, "min": t.low, "max": t.high}
            for name, t in named
        ]

    def caption(self) -> str:
        """What was timed and how, in words (the input, its length, the threads, the spread shown)."""
        threads = f"{self.threads} CPU thread{'' if self.threads == 1 else 's'}"
        runs = f"{self.repeats} timed run{'' if self.repeats == 1 else 's'} per configuration"
        return (
            f"Input: {self.tokens} tokens (the task's example “{_shorten(self.text)}”, repeated to that length), "
            f"batch of one, {threads}, {runs} after warm-up. Points: the median; bars and bands: the middle half "
            "of the runs (25th–75th percentile); the table gives the fastest and slowest. Other work on this "
            "machine (a training run, other sessions) slows every configuration alike."
        )


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def latency_lengths(max_length: int) -> list[int]:
    """The input lengths worth timing for a fusion trained at ``max_length``: the standard ones below it, and it."""
    return sorted({n for n in LATENCY_LENGTHS if n < max_length} | {max_length})


def default_latency_tokens(max_length: int) -> int:
    return min(DEFAULT_LATENCY_TOKENS, max_length)


def _timings(runs: list[Callable[[], object]], repeats: int, warmup: int) -> list[Timing]:
    """The wall times of each callable, summarised (:class:`Timing`).

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
    return [Timing.of(times) for times in timings]


def _filled(text: str, words: int) -> str:
    """``text`` repeated until it has at least ``words`` words (the tokenizer then cuts it to length)."""
    count = max(1, len(text.split()))
    return " ".join([text] * (words // count + 1))


def measure_latency(
    predictor: Predictor, repeats: int = DEFAULT_REPEATS, warmup: int = WARMUP_RUNS, tokens: int | None = None
) -> LatencyReport:
    """Time the encoder alone, the target adapter alone, and fusion over the first 1…N adapters, on one input
    of ``tokens`` tokens (default :func:`default_latency_tokens`; at most the fusion's ``max_length``).

    Runs under the predictor's lock so that another session's request cannot land inside a timing. The input
    is the task's first example repeated to the length asked for (the content does not change the work done;
    the length does), so the report's ``tokens`` is the length asked for, or the fusion's ``max_length``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be at least 1 and warmup at least 0, got {repeats} and {warmup}")
    info = predictor.info
    length = default_latency_tokens(info.max_length) if tokens is None else tokens
    if not 8 <= length <= info.max_length:
        raise ValueError(f"tokens must be between 8 and the fusion's max_length {info.max_length}, got {length}")
    examples = examples_for(info.task.name)
    text, pair = (examples[0].text, examples[0].pair) if examples else (FALLBACK_TEXT, None)
    if info.task.is_pair and pair is None:
        pair = FALLBACK_TEXT
    model = predictor.model
    single = info.own_adapter or info.adapters[0]
    with predictor.lock, torch.inference_mode():
        inputs = encode_input(
            predictor.tokenizer, _filled(text, length), _filled(pair, length) if pair else None, length
        ).inputs
        runs: list[Callable[[], object]] = [
            lambda: model.base_model(**inputs),
            lambda: model(**inputs, adapter_names=[single]),
        ]
        runs += [
            lambda k=k: model(**inputs, adapter_names=list(info.adapters[:k]), force_fusion=True)
            for k in range(1, len(info.adapters) + 1)
        ]
        base, one, *fused = _timings(runs, repeats, warmup)
    return LatencyReport(
        text=text if pair is None else f"{text} / {pair}",
        tokens=int(inputs["attention_mask"].sum()),
        repeats=repeats,
        threads=torch.get_num_threads(),
        base=base,
        single_adapter=single,
        single=one,
        fusion_adapters=info.adapters,
        fusion=tuple(fused),
    )
