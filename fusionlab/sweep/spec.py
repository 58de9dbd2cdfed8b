"""A sweep: the paper's question "which source adapters help this target?", answered by running every fusion.

A :class:`SweepSpec` names a target, its candidate source adapters, which subsets of them to try, the fusion
methods and the seeds. :func:`plan_runs` turns it into ordinary :class:`~fusionlab.runspec.FusionRun` specs —
each a fusion over the target's own adapter plus one subset of the sources, with the same budget — so the
local worker runs them one after another, a cluster backend in parallel, and every view that knows fusion runs
(Runs, Playground, ``fusionlab runs``) knows these too. What makes them a group is the sweep's record
(:mod:`fusionlab.sweep.group`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fusionlab.config import FUSION_METHODS, MAX_NAME_LENGTH, FusionConfig, JsonConfig, _fail, check_name
from fusionlab.runspec import Budget, FusionRun, fusion_name
from fusionlab.schema import stamp, upgrade

SUBSET_MODES = {
    "all": "every non-empty subset of the sources",
    "singles": "each source on its own",
    "leave-one-out": "all sources, and all but one in turn",
}
MAX_SOURCES = 8
MAX_SEEDS = 10
MAX_SWEEP_RUNS = 200
"""A sweep a user types can queue at most this many runs (``all`` over 8 sources × 2 methods × 10 seeds would
be 5,100): beyond it the command says how many it would be and what to cut."""


def source_subsets(sources: list[str], mode: str) -> list[tuple[str, ...]]:
    """The subsets of ``sources`` a sweep fuses (each with the target's own adapter), smallest first, in the
    sources' order within each subset."""
    if mode == "singles":
        return [(s,) for s in sources]
    if mode == "leave-one-out":
        full = tuple(sources)
        return [tuple(s for s in sources if s != left) for left in sources if len(sources) > 1] + [full]
    if mode == "all":
        return [c for k in range(1, len(sources) + 1) for c in itertools.combinations(sources, k)]
    raise ValueError(f"unknown subset mode {mode!r}; choose from {', '.join(SUBSET_MODES)}")


@dataclass
class SweepSpec(JsonConfig):
    """What ``fusionlab sweep`` was asked: a target, its candidate sources, the subsets, methods and seeds."""

    target: str
    sources: list[str]
    subsets: str = "all"
    methods: list[str] = field(default_factory=lambda: ["attention"])
    seeds: list[int] = field(default_factory=lambda: [1])
    budget: Budget = field(default_factory=Budget)
    data_dir: str | None = None

    _nested: ClassVar[dict[str, type[JsonConfig]]] = {"budget": Budget}

    def validate(self) -> None:
        if isinstance(self.budget, dict):
            self.budget = Budget.from_dict(self.budget)
        check_name(self.target, "SweepSpec.target")
        self._artifact_names("sources")
        if self.target in self.sources:
            _fail("SweepSpec", "sources", f"holds the target {self.target!r}: its own adapter is in every fusion")
        if len(self.sources) > MAX_SOURCES:
            _fail("SweepSpec", "sources", f"at most {MAX_SOURCES} sources, got {len(self.sources)}")
        self._choice("subsets", tuple(SUBSET_MODES))
        self._names("methods", allow_empty=False)
        for method in self.methods:
            if method not in FUSION_METHODS:
                _fail("SweepSpec", "methods", f"unknown method {method!r}; choose from {', '.join(FUSION_METHODS)}")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            _fail("SweepSpec", "seeds", f"must be a list of non-negative integers, got {self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds) or len(self.seeds) > MAX_SEEDS:
            _fail("SweepSpec", "seeds", f"at most {MAX_SEEDS} different seeds, got {self.seeds!r}")
        count = self.run_count
        if count > MAX_SWEEP_RUNS:
            _fail(
                "SweepSpec",
                "subsets",
                f"{len(self.subset_list)} subsets × {len(self.methods)} methods × {len(self.seeds)} seeds = {count} "
                f"runs, more than {MAX_SWEEP_RUNS}: fewer sources, seeds or methods, or --subsets singles",
            )

    @property
    def subset_list(self) -> list[tuple[str, ...]]:
        return source_subsets(self.sources, self.subsets)

    @property
    def run_count(self) -> int:
        return len(self.subset_list) * len(self.methods) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        return stamp({**super().to_dict(), "budget": self.budget.to_dict()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSpec:
        if not isinstance(data, dict):
            raise ValueError(f"SweepSpec: must be a JSON object, got {type(data).__name__}")
        return super().from_dict(upgrade(data, "a stored SweepSpec"))


@dataclass(frozen=True)
class SweepCell:
    """One run of a sweep: which subset, method and seed it trains."""

    subset: tuple[str, ...]
    method: str
    seed: int

    @property
    def key(self) -> str:
        """``mnli+qnli/attention/s1``: how the sweep's record names the run's slot."""
        return f"{'+'.join(self.subset)}/{self.method}/s{self.seed}"


def cells(spec: SweepSpec) -> list[SweepCell]:
    """Every run of the sweep in queue order: seed by seed, so a sweep cut short has every subset once."""
    return [SweepCell(s, m, seed) for seed in spec.seeds for s in spec.subset_list for m in spec.methods]


def run_name(sweep: str, cell: SweepCell, sources: list[str]) -> str:
    """``<sweep>-<subset>-<method>-s<seed>``; a subset too long for a name is written as a bit mask over the
    sources (``m0b``), which the sweep's record maps back."""
    subset = "+".join(cell.subset)
    name = f"{sweep}-{subset}-{cell.method}-s{cell.seed}"
    if len(name) > MAX_NAME_LENGTH:
        mask = sum(1 << sources.index(s) for s in cell.subset)
        name = f"{sweep}-m{mask:x}-{cell.method}-s{cell.seed}"
    return check_name(name, "sweep run name")


def plan_runs(spec: SweepSpec, sweep: str) -> list[tuple[SweepCell, FusionRun]]:
    """The sweep's fusion runs, each over ``[target, *subset]`` with the spec's budget and the cell's seed."""
    planned = []
    for cell in cells(spec):
        adapters = [spec.target, *cell.subset]
        budget = Budget.from_dict({**spec.budget.to_dict(), "seed": cell.seed})
        run = FusionRun(
            target_task=spec.target,
            adapters=adapters,
            name=run_name(sweep, cell, spec.sources),
            fusion_config=FusionConfig(fusion_method=cell.method, adapter_names=adapters),
            training_config=budget.training_config(),
            model_config=budget.model_config(),
            data_dir=spec.data_dir,
        )
        planned.append((cell, run))
    return planned


def default_sweep_name(target: str) -> str:
    return fusion_name(target, "sweep")
