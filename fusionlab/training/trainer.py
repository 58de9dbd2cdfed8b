"""Two-stage AdapterFusion training (Pfeiffer et al., 2021), from Python.

Stage 1, :meth:`FusionTrainer.train_adapter`: for one task, the base encoder stays frozen and one bottleneck
adapter per layer plus the task head are trained, then saved to ``<workspace>/adapters/<name>``.

Stage 2, :meth:`FusionTrainer.train_fusion`: the saved adapters are loaded and frozen, and only the fusion layers
and the target task's head are trained (with the paper's value regularisation if asked), then saved to
``<workspace>/fusions/<name>``. The base model and the adapters are hashed before and after: a single changed
bit aborts the run, because a fusion is only meaningful on the adapters it was trained with.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from transformers import set_seed

from fusionlab.adapters.manager import AdapterManager, tensors_hash
from fusionlab.base_model import check_max_length, load_encoder, load_tokenizer
from fusionlab.checkpoint import load_adapter_into, read_meta
from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig, TrainingConfig
from fusionlab.data import (
    DEV_SUBSET_SEED,
    SELECTION,
    CustomTask,
    TaskSpec,
    carve_selection,
    get_task,
    load_split,
    make_collator,
    subsample,
    tokenize_dataset,
)
from fusionlab.evaluation import EvaluationResult, evaluate_model
from fusionlab.metrics import majority_baseline
from fusionlab.model import FusionModel
from fusionlab.pack.store import install_pack, is_pack_artifact, own_name
from fusionlab.runspec import AdapterRun, FusionRun, RunResult, SplitUse, fusion_name
from fusionlab.training.loop import LoopHooks, LoopResult, Reporter, resolve_precision, run_training
from fusionlab.uncertainty import Difference, Score
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace


@dataclass
class TrainResult:
    """What one training stage produced: where it was saved and how well it does on the dev split."""

    kind: str  # "adapter" or "fusion"
    name: str
    task: str
    path: Path
    evaluation: EvaluationResult
    baseline: dict[str, float]
    steps: int
    best_step: int
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    loop: LoopResult | None = field(default=None, repr=False)
    main_metric: str = "accuracy"
    """The metric the task is judged by (its spec's), so no reader has to look the task up again."""
    selection: SplitUse | None = None
    own_adapter: EvaluationResult | None = None
    """Fusions: the target's own adapter alone, on the same dev examples (for the paired comparison)."""

    @property
    def metrics(self) -> dict[str, float]:
        """The saved weights' metrics on the dev split, which no choice during training looked at."""
        return self.evaluation.metrics

    @property
    def selection_metrics(self) -> dict[str, float]:
        """The best in-training evaluation, on the selection split carved from train (what picked the step)."""
        return self.loop.best_metrics if self.loop else {}

    @property
    def score(self) -> Score:
        """The main metric on dev with its bootstrap interval and example count."""
        return self.evaluation.score(self.main_metric)

    @property
    def own_adapter_difference(self) -> Difference | None:
        """Fusion minus its own adapter on the same dev examples, with the paired interval."""
        if self.own_adapter is None:
            return None
        return self.evaluation.difference(self.own_adapter, self.main_metric)

    @classmethod
    def of(cls, kind: str, name: str, spec: TaskSpec, path: Path, fit: _Fit) -> TrainResult:
        """The result of one fitted and saved stage."""
        loop = fit.loop
        return cls(
            kind,
            name,
            spec.name,
            path,
            fit.evaluation,
            fit.baseline,
            loop.steps,
            loop.best_step,
            loop.history,
            loop.stopped_early,
            loop,
            spec.main_metric,
            fit.selection,
            fit.own_adapter,
        )

    def to_run_result(self) -> RunResult:
        """The typed record of this stage that the run store keeps and every view reads."""
        evaluation = self.evaluation
        return RunResult(
            kind=self.kind,
            name=self.name,
            task=self.task,
            checkpoint=str(self.path),
            main_metric=self.main_metric,
            metrics=dict(evaluation.metrics),
            majority_baseline=dict(self.baseline),
            steps=self.steps,
            best_step=self.best_step,
            stopped_early=self.stopped_early,
            fusion_stats=evaluation.fusion_stats,
            confusion_matrix=evaluation.confusion_matrix,
            label_names=list(evaluation.label_names),
            score_interval=self.score if evaluation.num_examples else None,
            selection=self.selection,
            selection_metrics=dict(self.selection_metrics),
            own_adapter=self.own_adapter.score(self.main_metric) if self.own_adapter else None,
            own_adapter_difference=self.own_adapter_difference,
        )


def for_task(config: AdapterConfig, spec: TaskSpec) -> AdapterConfig:
    """``config`` describing ``spec``'s task: its name, type, number of labels and label names."""
    return dataclasses.replace(
        config,
        task_name=spec.name,
        task_type=spec.task_type,
        num_labels=spec.num_labels,
        label_names=list(spec.label_names),
    )


Compose = Callable[[FusionModel, str, AdapterConfig], None]
"""Adds one adapter, named by its second argument, to a model holding the source adapters (see
:meth:`FusionTrainer.train_composed`); the third argument describes the target task's labels."""


class _Fit(NamedTuple):
    """One training stage's outcome, with the dev examples it was scored on (for comparisons on the same ones)."""

    loop: LoopResult
    evaluation: EvaluationResult
    baseline: dict[str, float]
    dev: Any
    collator: Any
    selection: SplitUse
    own_adapter: EvaluationResult | None = None


class FusionTrainer:
    """Trains adapters and fusions on registered tasks and saves them into a workspace."""

    def __init__(
        self,
        model_config: ModelConfig | None = None,
        training_config: TrainingConfig | None = None,
        workspace: Workspace | str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
        reporter: Reporter | None = None,
        show_progress: bool = False,
    ) -> None:
        self.model_config = model_config or ModelConfig()
        self.training_config = training_config or TrainingConfig()
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.data_dir = data_dir
        self.reporter = reporter or Reporter()
        self.show_progress = show_progress
        self._encoder: torch.nn.Module | None = None
        self._tokenizer = None
        self.custom_tasks: dict[str, CustomTask] = {}

    def add_custom_task(self, custom: CustomTask) -> None:
        """Train and evaluate on a user's own data (from :func:`fusionlab.data.task_from_file`)."""
        self.custom_tasks[custom.spec.name] = custom

    # -- shared pieces -------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_config.model_name_or_path)
        return self._tokenizer

    def _fresh_encoder(self) -> torch.nn.Module:
        """A pristine copy of the encoder: loaded once, copied per model so hooks never pile up on it."""
        if self._encoder is None:
            self._encoder = load_encoder(self.model_config.model_name_or_path)
        return copy.deepcopy(self._encoder)

    def _split(self, task: TaskSpec, split: str, max_samples: int | None, seed: int):
        """``train``, ``selection`` (carved from train) or ``validation`` of a built-in or a user's task."""
        custom = self.custom_tasks.get(task.name)
        if custom is None:
            return load_split(task, split, self.data_dir, max_samples, seed)
        if split == "validation":
            return subsample(custom.validation, max_samples, seed)
        train, selection = carve_selection(custom.train, custom.spec)
        return subsample(train if split == "train" else selection, max_samples, seed)

    def _datasets(self, task: TaskSpec, config: TrainingConfig):
        """Tokenised ``(train, selection, dev)``: training learns on the first, every choice is made on the second,
        and the third is only scored. ``max_eval_samples`` bounds the selection and the dev examples alike."""
        max_length = self.model_config.max_length
        splits = (
            self._split(task, "train", config.max_train_samples, config.seed),
            self._split(task, SELECTION, config.max_eval_samples, DEV_SUBSET_SEED),
            self._split(task, "validation", config.max_eval_samples, DEV_SUBSET_SEED),
        )
        return tuple(tokenize_dataset(split, task, self.tokenizer, max_length) for split in splits)

    def _fit(
        self,
        model: FusionModel,
        task: TaskSpec,
        config: TrainingConfig,
        names: list[str],
        snapshots: bool,
        own_adapter: str | None = None,
    ) -> _Fit:
        check_max_length(self.model_config.max_length, model.base_model)
        train, selection, dev = self._datasets(task, config)
        collator = make_collator(self.tokenizer)

        def selection_metrics() -> dict[str, float]:
            return evaluate_model(
                model, selection, task, collator, names, config.per_device_eval_batch_size, keep_predictions=False
            ).metrics

        probe = selection.select(range(min(32, len(selection))))

        def fusion_snapshot() -> dict:
            stats = evaluate_model(model, probe, task, collator, names, keep_predictions=False).fusion_stats
            return {"adapter_names": names, "layers": stats.mean if stats else []}

        hooks = LoopHooks(selection_metrics, task.main_metric, fusion_snapshot if snapshots else None)
        loop = run_training(model, train, collator, config, hooks, self.reporter, self.show_progress)
        batch = config.per_device_eval_batch_size
        evaluation = evaluate_model(model, dev, task, collator, names, batch)
        own = None
        if own_adapter is not None:  # the same dev examples, the same truncation: a paired comparison
            own = evaluate_model(model, dev, task, collator, [own_adapter], batch, keep_predictions=False)
        split_use = SplitUse(SELECTION, len(selection), "validation", len(dev))
        return _Fit(loop, evaluation, majority_baseline(dev["labels"], task), dev, collator, split_use, own)

    @staticmethod
    def _own_adapter(model: FusionModel, task: TaskSpec, adapters: list[str]) -> str | None:
        """The target's own adapter among those fused, if any: the comparison fusion exists for (paper, Table 1:
        single-task adapter vs fusion), scored on exactly the fusion's dev examples, not taken from its own run."""
        own = [n for n in adapters if model.adapter_manager.configs[n].task_name == task.name]
        return own[0] if own else None

    # -- stage 1 ---------------------------------------------------------------------------------------------
    def train_adapter(
        self,
        task: str | TaskSpec,
        adapter_config: AdapterConfig | None = None,
        name: str | None = None,
        training_config: TrainingConfig | None = None,
    ) -> TrainResult:
        """Train one adapter (and its head) on ``task`` with the encoder frozen; save it to the workspace."""
        spec = task if isinstance(task, TaskSpec) else get_task(task)
        config = training_config or self.training_config
        name = name or own_name(self.workspace, spec.name)  # the task's name, beside the pack's adapter if it has it
        adapter_config = for_task(adapter_config or AdapterConfig(), spec)
        self._refuse_pack_artifact(self.workspace.adapter_dir(name))
        set_seed(config.seed)
        encoder = self._fresh_encoder()
        manager = AdapterManager(int(encoder.config.hidden_size), {name: adapter_config})
        model = FusionModel(self.model_config, None, manager, encoder=encoder)
        model.train_adapter_only(name)
        fit = self._fit(model, spec, config, [name], snapshots=False)
        extra = self._extra(spec, config, fit)
        path = model.save_pretrained(self.workspace.adapter_dir(name), adapter_name=name, extra=extra)
        return TrainResult.of(AdapterRun.artifact, name, spec, Path(path), fit)

    # -- stage 2 ---------------------------------------------------------------------------------------------
    def load_adapters(self, names: list[str]) -> FusionModel:
        """A model holding the named adapters from the workspace (checked to fit the base model)."""
        if any(not (self.workspace.adapter_dir(n) / CHECKPOINT_MARKER).is_file() for n in names):
            install_pack(self.workspace.ensure())  # the pack's adapters, as from a hub (no-op if none)
        encoder = self._fresh_encoder()
        manager = AdapterManager(int(encoder.config.hidden_size), num_layers=1)
        model = FusionModel(self.model_config, None, manager, encoder=encoder)
        for adapter in names:
            load_adapter_into(model, self.workspace.adapter_dir(adapter), adapter)
        return model

    def train_fusion(
        self,
        target_task: str | TaskSpec,
        adapters: list[str],
        method: str = "attention",
        fusion_config: FusionConfig | None = None,
        name: str | None = None,
        training_config: TrainingConfig | None = None,
    ) -> TrainResult:
        """Train fusion layers over frozen ``adapters`` for ``target_task``; save the fusion to the workspace."""
        spec = target_task if isinstance(target_task, TaskSpec) else get_task(target_task)
        config = training_config or self.training_config
        fusion_config = dataclasses.replace(
            fusion_config or FusionConfig(fusion_method=method, adapter_names=list(adapters)),
            adapter_names=list(adapters),
            target_task=spec.name,
            num_labels=spec.num_labels,
            label_names=list(spec.label_names),
        )
        # the one naming rule (the CLI's, the Train page's): <target>-<method>, beside the pack's if it has that
        name = name or own_name(self.workspace, fusion_name(spec.name, fusion_config.fusion_method), kind="fusion")
        self._refuse_pack_artifact(self.workspace.fusion_dir(name))
        set_seed(config.seed)
        model = self.load_adapters(list(adapters))
        model.add_fusion(fusion_config)
        model.train_fusion_only()
        frozen_before = self._frozen_fingerprint(model)
        snapshots = config.snapshot_steps is not None
        own = self._own_adapter(model, spec, list(adapters))
        fit = self._fit(model, spec, config, list(adapters), snapshots=snapshots, own_adapter=own)
        if self._frozen_fingerprint(model) != frozen_before:
            raise RuntimeError("fusion training changed the frozen base model or adapters; nothing was saved")
        extra = self._extra(spec, config, fit)
        evaluation = fit.evaluation
        extra["fusion_stats"] = evaluation.fusion_stats.to_dict() if evaluation.fusion_stats else None
        if fit.own_adapter is not None:
            extra["own_adapter_metrics"] = fit.own_adapter.metrics
            extra["own_adapter"] = fit.own_adapter.score(spec.main_metric).to_dict()
            extra["own_adapter_difference"] = evaluation.difference(fit.own_adapter, spec.main_metric).to_dict()
        path = model.save_pretrained(self.workspace.fusion_dir(name), extra=extra)
        return TrainResult.of(FusionRun.artifact, name, spec, Path(path), fit)

    # -- composition: one adapter built out of several (issue "Composition lab") --------------------------------
    def train_composed(
        self,
        target_task: str | TaskSpec,
        adapters: list[str],
        compose: Compose,
        name: str,
        finetune: bool = False,
        training_config: TrainingConfig | None = None,
    ) -> TrainResult:
        """Build one adapter out of the frozen ``adapters`` and train a ``target_task`` head on it; save it.

        ``compose(model, name, task_config)`` adds the new adapter to a model holding ``adapters`` (a merge, a
        searched combination). Then only its head learns or, with ``finetune``, the adapter as well. The result is
        an ordinary adapter checkpoint (with its head), usable on its own like any trained adapter.
        """
        spec = target_task if isinstance(target_task, TaskSpec) else get_task(target_task)
        config = training_config or self.training_config
        task_config = for_task(AdapterConfig(), spec)
        self._refuse_pack_artifact(self.workspace.adapter_dir(name))
        set_seed(config.seed)
        model = self.load_adapters(list(adapters))
        compose(model, name, task_config)
        for source in adapters:  # the sources are folded into the new adapter: it is what trains and is saved
            model.remove_adapter(source)
        if finetune:
            model.train_adapter_only(name)
        else:
            model.train_head_only(name)
        fit = self._fit(model, spec, config, [name], snapshots=False)
        extra = self._extra(spec, config, fit)
        extra["composed_from"] = list(adapters)
        path = model.save_pretrained(self.workspace.adapter_dir(name), adapter_name=name, extra=extra)
        return TrainResult.of(AdapterRun.artifact, name, spec, Path(path), fit)

    def tokenized_split(self, task: str | TaskSpec, split: str, max_samples: int | None, seed: int):
        """A split of ``task`` tokenised at the model config's max length (``max_samples`` drawn with ``seed``)."""
        spec = task if isinstance(task, TaskSpec) else get_task(task)
        rows = self._split(spec, split, max_samples, seed)
        return tokenize_dataset(rows, spec, self.tokenizer, self.model_config.max_length)

    @staticmethod
    def _refuse_pack_artifact(directory: Path) -> None:
        """The pack's adapters and fusions are read-only: fusions trained on them must keep loading."""
        if is_pack_artifact(directory):
            raise ValueError(
                f"{directory.name!r} in {directory.parent} comes from the pretrained pack and is read-only; "
                "train under another name (--name)"
            )

    @staticmethod
    def _frozen_fingerprint(model: FusionModel) -> tuple[str, dict[str, str]]:
        names = model.fusion_config.adapter_names if model.fusion_config else model.adapter_manager.names
        base = tensors_hash({k: v for k, v in model.base_model.state_dict().items()})
        return base, {n: model.adapter_manager.content_hash(n) for n in names}

    def _extra(self, spec: TaskSpec, config: TrainingConfig, fit: _Fit) -> dict:
        """What a checkpoint records of its run: dev metrics with their interval, and what selected it."""
        evaluation = fit.evaluation
        return {
            "task": spec.name,
            "task_spec": spec.to_dict(),
            "metrics": evaluation.metrics,
            "main_metric": spec.main_metric,
            "score_interval": evaluation.score(spec.main_metric).to_dict() if evaluation.num_examples else None,
            "majority_baseline": fit.baseline,
            "selection": fit.selection.to_dict(),
            "selection_metrics": fit.loop.best_metrics,
            "training_config": config.to_dict(),
            "precision": resolve_precision(config.mixed_precision),
            "steps": fit.loop.steps,
            "learning_rate_scales": fit.loop.learning_rate_scales,
        }

    # -- evaluation ------------------------------------------------------------------------------------------
    def evaluate(
        self,
        checkpoint: str | os.PathLike,
        adapter_names: list[str] | None = None,
        task: str | TaskSpec | None = None,
        max_samples: int | None = None,
        split: str = "validation",
        rows: Sequence[int] | None = None,
    ) -> EvaluationResult:
        """Evaluate a saved adapter or fusion on its task's dev split (or ``task``'s).

        ``split="selection"`` scores the examples its training chose its step on (carved from train), so an
        in-training number can be checked against the saved weights; dev is what is reported. ``rows`` scores
        only those rows of the split, in that order (a spot check of predictions recorded on a pack card)."""
        path = Path(checkpoint)
        meta = read_meta(path)
        model = FusionModel.from_pretrained(
            path, adapters_dir=self.workspace.adapters_dir, encoder=self._fresh_encoder()
        )
        spec_name = task or meta.get("extra", {}).get("task")
        if spec_name is None:
            raise ValueError(f"{path} does not record its task; pass task=...")
        spec = spec_name if isinstance(spec_name, TaskSpec) else get_task(spec_name)
        dev = self._split(spec, split, max_samples, DEV_SUBSET_SEED)
        if rows is not None:
            dev = dev.select(_checked_rows(rows, len(dev), f"{spec.name} {split}"))
        # the checkpoint's own max_length: scoring at another truncation than training would not be its score
        tokenized = tokenize_dataset(dev, spec, self.tokenizer, model.model_config.max_length)
        return evaluate_model(
            model,
            tokenized,
            spec,
            make_collator(self.tokenizer),
            adapter_names,
            self.training_config.per_device_eval_batch_size,
        )


def _checked_rows(rows: Sequence[int], size: int, split: str) -> list[int]:
    """``rows`` as a list, refused (with the offending row) unless each is a row of a split of ``size`` rows."""
    rows = [int(row) for row in rows]
    if not rows:
        raise ValueError(f"no rows of the {split} split to score")
    bad = next((row for row in rows if not 0 <= row < size), None)
    if bad is not None:
        raise ValueError(f"row {bad} is not a row of the {split} split ({size:,} rows)")
    return rows
