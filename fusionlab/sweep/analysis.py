"""What a sweep answers: which subset of sources is best, what each source adds, and whether the fusion leans on
the sources that help.

Read from the finished runs of a sweep's record (:mod:`fusionlab.sweep.group`), never from anything else:

* **grid**: each subset × method, the mean dev score over seeds with its Student-t interval (the spread of
  training runs, not only of the dev examples); one seed has no spread, and the views say so;
* **best subset** per method, and its paired difference with the runner-up (per seed, same seeds): "within
  noise" when that interval includes 0;
* **marginal effect** of each source: the mean change of the score when it is added to a subset (every pair
  ``S`` → ``S ∪ {source}`` in the grid, seed by seed; adding it to the empty subset compares with the target's
  own adapter alone, which every fusion run scores on the same examples);
* **usage**: the source's mean fusion weight in the runs that fuse it, as a multiple of the even share 1/N
  (1 = no preference), so "what the fusion leans on" sits beside "what actually helps".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from fusionlab.runspec import RunResult, run_result
from fusionlab.runstore import FINISHED, RunStore
from fusionlab.sweep.group import SweepRecord
from fusionlab.uncertainty import mean_interval
from fusionlab.workspace import Workspace


@dataclass(frozen=True)
class Estimate:
    """A mean over runs with its 95 % Student-t interval and how many values it rests on."""

    mean: float
    low: float
    high: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        mean, low, high = mean_interval(values)
        return cls(mean, low, high, len(values))

    @property
    def within_noise(self) -> bool:
        return self.count < 2 or self.low <= 0.0 <= self.high

    def text(self, signed: bool = False) -> str:
        sign = "+" if signed else ""
        if self.count < 2:
            return f"{self.mean:{sign}.3f} (1 value: no interval)"
        return f"{self.mean:{sign}.3f} [{self.low:{sign}.3f}, {self.high:{sign}.3f}] (n={self.count})"


@dataclass(frozen=True)
class GridCell:
    subset: tuple[str, ...]
    method: str
    score: Estimate  # over seeds
    seeds: dict[int, float]


@dataclass(frozen=True)
class SourceEffect:
    source: str
    method: str
    effect: Estimate  # mean change of the score when the source is added
    usage: float | None  # mean fusion weight ÷ even share in the runs that fuse it (None: no weights recorded)


@dataclass(frozen=True)
class BestSubset:
    method: str
    best: GridCell
    runner_up: GridCell | None
    margin: Estimate | None  # best − runner-up, paired by seed

    def text(self) -> str:
        line = f"{self.method}: best {'+'.join(self.best.subset)} {self.best.score.text()}"
        if self.runner_up is None or self.margin is None:
            return line
        verdict = "within noise" if self.margin.within_noise else "better"
        return f"{line}; vs {'+'.join(self.runner_up.subset)}: {self.margin.text(signed=True)}, {verdict}"


@dataclass(frozen=True)
class SweepReport:
    name: str
    target: str
    metric: str
    finished: int
    total: int
    own_adapter: float | None  # the target's adapter alone on the same dev examples
    majority: float | None  # always answering the majority class, on the same examples
    dev_examples: int | None
    grid: list[GridCell]
    best: list[BestSubset]
    effects: list[SourceEffect]


def _usage(result: RunResult, source: str) -> float | None:
    stats = result.fusion_stats
    if stats is None or source not in stats.adapter_names or not stats.mean:
        return None
    weights = np.asarray(stats.mean, dtype=float)  # [layer, adapter]
    return float(weights[:, stats.adapter_names.index(source)].mean() * len(stats.adapter_names))


def sweep_report(workspace: Workspace, record: SweepRecord) -> SweepReport:
    """The sweep's grid, best subsets, marginal effects and usage, from its finished runs."""
    store = RunStore(workspace.runs_db)
    spec = record.spec
    scores: dict[tuple[tuple[str, ...], str], dict[int, float]] = defaultdict(dict)
    usage: dict[tuple[str, str], list[float]] = defaultdict(list)
    own: list[float] = []
    majority: float | None = None
    metric, examples, finished = "", None, 0
    cells = record.cell_runs()
    for cell, run_id in cells:
        run = store.get(run_id) if run_id is not None else None
        result = run_result(run) if run is not None and run.status == FINISHED else None
        if result is None:
            continue
        finished += 1
        metric = result.main_metric
        majority = result.majority_baseline.get(metric, majority)
        scores[(cell.subset, cell.method)][cell.seed] = result.score
        if result.score_interval is not None:
            examples = result.score_interval.examples
        if result.own_adapter is not None:
            own.append(result.own_adapter.value)
        for source in cell.subset:
            value = _usage(result, source)
            if value is not None:
                usage[(source, cell.method)].append(value)
    grid = [
        GridCell(subset, method, Estimate.of(list(seeds.values())), dict(seeds))
        for (subset, method), seeds in scores.items()
    ]
    own_score = float(np.mean(own)) if own else None
    return SweepReport(
        name=record.name,
        target=spec.target,
        metric=metric,
        finished=finished,
        total=len(cells),
        own_adapter=own_score,
        majority=majority,
        dev_examples=examples,
        grid=grid,
        best=[b for m in spec.methods if (b := _best(grid, m)) is not None],
        effects=[
            e for m in spec.methods for s in spec.sources if (e := _effect(scores, own_score, s, m, usage)) is not None
        ],
    )


def _best(grid: list[GridCell], method: str) -> BestSubset | None:
    ranked = sorted((c for c in grid if c.method == method), key=lambda c: -c.score.mean)
    if not ranked:
        return None
    best = ranked[0]
    if len(ranked) == 1:
        return BestSubset(method, best, None, None)
    runner = ranked[1]
    paired = [best.seeds[s] - runner.seeds[s] for s in best.seeds if s in runner.seeds]
    return BestSubset(method, best, runner, Estimate.of(paired) if paired else None)


def _effect(
    scores: dict[tuple[tuple[str, ...], str], dict[int, float]],
    own: float | None,
    source: str,
    method: str,
    usage: dict[tuple[str, str], list[float]],
) -> SourceEffect | None:
    changes = []
    for (subset, m), with_source in scores.items():
        if m != method or source not in subset:
            continue
        without = tuple(s for s in subset if s != source)
        if not without:
            if own is not None:
                changes.extend(v - own for v in with_source.values())
            continue
        base = scores.get((without, method), {})
        changes.extend(with_source[seed] - base[seed] for seed in with_source if seed in base)
    if not changes:
        return None
    used = usage.get((source, method))
    return SourceEffect(source, method, Estimate.of(changes), float(np.mean(used)) if used else None)


def format_report(report: SweepReport) -> str:
    """The report as ``fusionlab sweep show`` prints it."""
    lines = [
        f"sweep {report.name}: fusions for {report.target}, {report.finished}/{report.total} runs finished; "
        f"{report.metric or 'score'} on the dev split"
        + (f" ({report.dev_examples:,} examples)" if report.dev_examples else "")
        + (f"; {report.target}'s adapter alone: {report.own_adapter:.3f}" if report.own_adapter is not None else "")
    ]
    if not report.grid:
        lines.append("no run has finished yet")
        return "\n".join(lines)
    width = max(len("+".join(c.subset)) for c in report.grid)
    lines.append(f"{'subset':<{width}}  {'method':<9}  mean over seeds [95 % interval]")
    for cell in sorted(report.grid, key=lambda c: (c.method, len(c.subset), c.subset)):
        lines.append(f"{'+'.join(cell.subset):<{width}}  {cell.method:<9}  {cell.score.text()}")
    lines.extend(b.text() for b in report.best)
    for effect in report.effects:
        used = f"; fusion weight {effect.usage:.2f}× the even share" if effect.usage is not None else ""
        verdict = "within noise" if effect.effect.within_noise else ("helps" if effect.effect.mean > 0 else "hurts")
        lines.append(f"adding {effect.source} ({effect.method}): {effect.effect.text(signed=True)}, {verdict}{used}")
    return "\n".join(lines)
