"""What every method of one comparison shares: the options, a trainer over the comparison's own workspace, the
target task, its fixed dev subset, the batch latencies are timed on, and how a saved checkpoint is scored."""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from fusionlab.budgets import resolve_budget
from fusionlab.checkpoint import read_meta
from fusionlab.composition.merging import MergeOptions
from fusionlab.composition.results import CompareOptions
from fusionlab.config import ModelConfig, TrainingConfig
from fusionlab.data import DEV_SUBSET_SEED, get_task, make_collator
from fusionlab.model import FusionModel
from fusionlab.pack.store import install_pack
from fusionlab.training.loop import Reporter
from fusionlab.training.trainer import FusionTrainer, TrainResult
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

COMPARISONS_DIR = "comparisons"
T = TypeVar("T")


def comparison_dir(workspace: Workspace, options: CompareOptions) -> Path:
    return workspace.root / COMPARISONS_DIR / options.slug


class Session:
    """What every method of one comparison shares: options, trainer, the target, the dev subset and batches."""

    def __init__(
        self,
        options: CompareOptions,
        source: Workspace,
        data_dir: str | None,
        model_name: str,
        copy_adapters: bool = True,
        reporter: Reporter | None = None,
    ) -> None:
        """``copy_adapters=False`` reopens a finished comparison over the adapter copies it already holds;
        ``reporter`` receives every method's training steps (and may cancel them)."""
        self.options = options
        self.spec = get_task(options.target)
        self.root = comparison_dir(source, options)
        self.workspace = Workspace(self.root).ensure()
        if copy_adapters:
            self._copy_adapters(source)
        model_config = ModelConfig(model_name_or_path=model_name, max_length=options.max_length)
        self.trainer = FusionTrainer(model_config, self.training_config(), self.workspace, data_dir, reporter)
        self.collator = make_collator(self.trainer.tokenizer)
        self.dev = self.trainer.tokenized_split(self.spec, "validation", options.max_eval_samples, DEV_SUBSET_SEED)
        self.latency_batch = self.collator([self.dev[i] for i in range(min(options.latency_batch, len(self.dev)))])

    def training_config(self) -> TrainingConfig:
        """The ``compare`` profile of :func:`~fusionlab.budgets.resolve_budget` with the comparison's choices:
        the same budget for every trained method, and one evaluation, at the end, so nothing is selected."""
        o = self.options
        budget = resolve_budget(
            o.target,
            "fusion",
            "compare",
            steps=o.max_steps,
            learning_rate=o.learning_rate,
            batch_size=o.batch_size,
            max_length=o.max_length,
            max_train_samples=o.max_train_samples,
            max_eval_samples=o.max_eval_samples,
            eval_steps=o.max_steps,
            seed=o.seed,
        )
        return budget.training_config()

    def _copy_adapters(self, source: Workspace) -> None:
        for name in self.options.adapters:
            origin, copy = source.adapter_dir(name), self.workspace.adapter_dir(name)
            if not (origin / CHECKPOINT_MARKER).is_file():
                install_pack(source.ensure())  # the pack's adapters, as a training run would get them
            if not (origin / CHECKPOINT_MARKER).is_file():
                raise FileNotFoundError(f"no adapter {name!r} in {source.adapters_dir}")
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(origin, copy)

    # -- helpers the methods use --------------------------------------------------------------------------
    def artifact(self, what: str) -> str:
        return f"{self.spec.name}-{what}".replace("_", "-")

    def own_adapter(self) -> str | None:
        """The source adapter trained on the target task, if one is (its checkpoint's recorded task)."""
        for name in self.options.adapters:
            if read_meta(self.workspace.adapter_dir(name))["adapter_config"].get("task_name") == self.spec.name:
                return name
        return None

    def main(self, result: TrainResult) -> float:
        return float(result.evaluation.metrics[self.spec.main_metric])

    def merge_options(self, method: str) -> MergeOptions:
        o = self.options
        density = o.dare_density if method == "dare" else o.density
        return MergeOptions(scale=o.scale, density=density, seed=o.seed)

    @functools.cached_property
    def few_shot(self):
        """``search_examples`` target training examples, tokenised: the LoraHub search's few-shot set, and the
        examples pruning ranks adapters on (training data, so the dev set only scores)."""
        return self.trainer.tokenized_split(self.spec, "train", self.options.search_examples, self.options.seed)

    def few_shot_batch(self) -> dict[str, torch.Tensor]:
        """:attr:`few_shot`, collated into one batch."""
        return self.collator([self.few_shot[i] for i in range(len(self.few_shot))])

    @staticmethod
    def timed(run: Callable[[], T]) -> tuple[T, float]:
        start = time.perf_counter()
        value = run()
        return value, time.perf_counter() - start

    # -- scoring ------------------------------------------------------------------------------------------
    def load(self, path: Path) -> FusionModel:
        """A checkpoint this comparison saved, loaded afresh (its adapters from the comparison's workspace)."""
        return FusionModel.from_pretrained(path, adapters_dir=self.workspace.adapters_dir).eval()
