"""The fixed recipe of the pretrained pack: which adapters and fusions, on which data, for how long.

One dataclass per artifact, so that a card can record exactly the recipe that made it and ``fusionlab pack
build`` can rebuild any single artifact. The numbers were chosen for the bundled all-MiniLM-L6-v2 on a 2-core
CPU: every artifact trains for epochs, stopped early on the selection split carved from its train data (the
dev split it is scored on chooses nothing), ``max_length`` covers about 95-99 % of each task's examples
(measured on its train split, see ``bench/task_lengths.py``), and the adapter learning rate is 1e-3 (the
paper's 1e-4 is for BERT-base on a GPU; ``bench/lr_sweep.py`` records the sweep).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from fusionlab.config import AdapterConfig, JsonConfig, ModelConfig, TrainingConfig, _fail
from fusionlab.runspec import Budget

PACK_SEED = 42


@dataclass(kw_only=True)
class StageRecipe(JsonConfig):
    """What every stage of the pack shares: budget, batch, truncation, learning rate and dev evaluation."""

    steps: int
    """Optimisation steps; ``-1`` trains ``epochs`` epochs (with ``eval_steps`` and, usually, a patience)."""
    max_length: int
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_ratio: float = 0.06
    max_train_samples: int | None = None
    eval_steps: int | None = None
    max_eval_samples: int | None = 1000
    seed: int = PACK_SEED
    epochs: float = 1.0
    early_stopping_patience: int | None = None
    """Stop after this many evaluations on the selection split without a new best (``None``: never)."""

    def validate(self) -> None:
        for name in ("max_length", "batch_size"):
            self._positive_int(name)
        if self.steps != -1:
            self._positive_int("steps")
        elif self.eval_steps is None:
            _fail(type(self).__name__, "eval_steps", "must be set when training by epochs (steps=-1)")
        for name in ("max_train_samples", "eval_steps", "max_eval_samples", "early_stopping_patience"):
            self._positive_int(name, allow_none=True)

    def budget(self, snapshots: bool = False) -> Budget:
        """The recipe as a :class:`~fusionlab.runspec.Budget` (every field they share, by name, so an option
        added to both needs no edit here): four selection evaluations per run unless ``eval_steps`` says
        otherwise (the best step is kept), and fusion-weight snapshots every 10 % if asked (every evaluation when
        training by epochs, whose step count is not known here)."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(Budget) if hasattr(self, f.name)}
        every = self.eval_steps or max(1, self.steps // 4)
        snapshot = (max(1, self.steps // 10) if self.steps > 0 else every) if snapshots else None
        return Budget(**{**shared, "eval_steps": every, "snapshot_steps": snapshot})

    def steps_for(self, train_examples: int) -> int:
        """How many optimisation steps the recipe's whole budget is on ``train_examples`` examples (its epochs,
        before early stopping): the fixed budget a comparison gives every method, where nothing is selected."""
        if self.steps != -1:
            return self.steps
        examples = min(train_examples, self.max_train_samples or train_examples)
        return max(1, math.ceil(self.epochs * math.ceil(examples / self.batch_size)))

    def model_config(self) -> ModelConfig:
        return self.budget().model_config()

    def training_config(self, snapshots: bool = False) -> TrainingConfig:
        return self.budget(snapshots).training_config()


@dataclass
class AdapterRecipe(StageRecipe):
    """Stage 1 for one task: an adapter of ``adapter_size`` trained ``steps`` steps on its train split."""

    task: str
    adapter_size: int = 64

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.task, str) or not self.task:
            _fail("AdapterRecipe", "task", f"must name a task, got {self.task!r}")
        self._positive_int("adapter_size")

    @property
    def name(self) -> str:
        return self.task

    def adapter_config(self) -> AdapterConfig:
        return AdapterConfig(adapter_size=self.adapter_size)


@dataclass
class FusionRecipe(StageRecipe):
    """Stage 2 for one target: a fusion over pack adapters (the target's own first), trained on the target."""

    name: str
    target: str
    adapters: list[str] = field(default_factory=list)
    method: str = "attention"

    def validate(self) -> None:
        super().validate()
        self._names("adapters", allow_empty=False)

    def training_config(self, snapshots: bool = True) -> TrainingConfig:
        return super().training_config(snapshots)


IMDB_LOW_RESOURCE = 100
"""The pack's IMDb adapter sees only this many training reviews: the low-resource sentiment target on which
the SST-2 adapter has something to give (the notebook's story: sentiment adapter alone vs all fused). 100 is one
of the learning curve's points (``fusionlab curve``), where the paper expects fusion to help most."""

IMDB_BUDGET = {
    "steps": -1,
    "epochs": 40,  # 7 steps an epoch: 100 reviews in batches of 16
    "max_length": 128,  # about the first 100 words of a review: the CPU budget, not the reviews' length
    "batch_size": 16,
    "max_train_samples": IMDB_LOW_RESOURCE,
    "eval_steps": 14,
    "early_stopping_patience": 6,
    "max_eval_samples": 500,
}
"""The same budget for the IMDb adapter and the fusion over it, so that "fusion vs its adapter" compares like
with like."""

ADAPTERS: tuple[AdapterRecipe, ...] = (
    AdapterRecipe("rte", steps=-1, epochs=15, max_length=192, batch_size=16, eval_steps=70, early_stopping_patience=6),
    AdapterRecipe("cb", steps=-1, epochs=30, max_length=256, batch_size=16, eval_steps=13, early_stopping_patience=10),
    AdapterRecipe("mrpc", steps=-1, epochs=10, max_length=128, eval_steps=52, early_stopping_patience=5),
    AdapterRecipe("cola", steps=-1, epochs=8, max_length=48, eval_steps=120, early_stopping_patience=4),
    AdapterRecipe("sick", steps=-1, epochs=8, max_length=64, eval_steps=63, early_stopping_patience=4),
    AdapterRecipe("imdb", **IMDB_BUDGET),
    AdapterRecipe("boolq", steps=-1, epochs=5, max_length=256, batch_size=16, eval_steps=65, early_stopping_patience=4),
    AdapterRecipe("qnli", steps=-1, epochs=4, max_length=128, eval_steps=140, early_stopping_patience=3),
    AdapterRecipe("mnli", steps=-1, epochs=5, max_length=128, eval_steps=220, early_stopping_patience=3),
    AdapterRecipe("sst2", steps=-1, epochs=1, max_length=64, eval_steps=350, early_stopping_patience=3),
)
"""Trained to convergence (issue "Adapters that learn"): epochs, not a step budget, with an evaluation on the
selection split carved from train about every half epoch and early stopping after two to three epochs of the
small tasks without a new best (about one and a half of the large ones: one epoch of SST-2's 60,000 sentences,
five of MNLI's 15,000-pair subset, four of QNLI's 9,800, where half an epoch and two epochs still ended at their
best evaluation). A curve still rising at its last evaluation is on its card. The learning rate is 1e-3 for every
task: the sweeps (``bench/records/lr_sweep.json``) found 3e-4 no better for RTE and neither 3e-4 nor 3e-3 better
for CB on its 50 selection pairs or for QNLI (whose selection accuracy peaks at the same step at every rate); for
MRPC they rank 3e-3 first on selection (0.858 against 0.835), and for MNLI ten epochs over five (0.689 against
0.679, the same on dev) and for SST-2 three epochs over one (0.936 against 0.906, the same on dev), all run
after this pack was built and not adopted (docs/pack.md); the other tasks'
curves are on their cards."""

FUSIONS: tuple[FusionRecipe, ...] = (
    FusionRecipe("imdb-attention", "imdb", ["imdb", "sst2", "mnli", "qnli"], **IMDB_BUDGET),
    FusionRecipe(
        "rte-attention",
        "rte",
        ["rte", "mnli", "qnli", "sick"],
        steps=-1,
        epochs=4,
        max_length=192,
        batch_size=16,
        eval_steps=70,
        early_stopping_patience=4,
    ),
)


def adapter_recipe(task: str) -> AdapterRecipe:
    for recipe in ADAPTERS:
        if recipe.task == task:
            return recipe
    raise ValueError(f"the pack has no adapter for {task!r}; it has {', '.join(r.task for r in ADAPTERS)}")


def fusion_recipe(target: str) -> FusionRecipe | None:
    """The pack's fusion for ``target``, if it has one."""
    return next((recipe for recipe in FUSIONS if recipe.target == target), None)


SOURCES_WITHOUT_A_FUSION = ("mnli", "qnli", "sst2", "sick")
"""The sources fused with a target the pack has no fusion for: the large-data tasks and SICK (BoolQ's adapter did
not learn beyond its majority class, so it is no source)."""


def fusion_sources(target: str) -> list[str]:
    """The source adapters a fusion for ``target`` draws on, besides the target's own: the pack fusion's for that
    target, else :data:`SOURCES_WITHOUT_A_FUSION` (the benches compare methods over the same adapters)."""
    recipe = fusion_recipe(target)
    if recipe is not None:
        return [name for name in recipe.adapters if name != target]
    return [name for name in SOURCES_WITHOUT_A_FUSION if name != target]
