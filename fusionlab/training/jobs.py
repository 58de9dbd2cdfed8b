"""Run kinds the worker executes: one adapter training or one fusion training, described by a JSON config.

A run's config is plain JSON so that the CLI, the dashboard and the run store all speak the same language:

* ``train_adapter``: ``{"task", "name"?, "adapter_config"?, "training_config"?, "model_config"?, "data_dir"?,
  "custom_task"?}``
* ``train_fusion``: ``{"target_task", "adapters", "name"?, "fusion_config"?, "training_config"?,
  "model_config"?, "data_dir"?, "custom_task"?}``

``custom_task`` (the keyword arguments of :func:`fusionlab.data.task_from_file`: ``path``, ``text_columns``,
``label_column``, ``name``, ...) trains on a user's own CSV/JSONL file, re-read in the worker's process.
"""

from __future__ import annotations

from typing import Any

from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig, TrainingConfig
from fusionlab.data import task_from_file
from fusionlab.training.loop import Reporter, TrainingCancelled
from fusionlab.training.trainer import FusionTrainer, TrainResult
from fusionlab.workspace import Workspace


class ContextReporter(Reporter):
    """Forwards training events to a worker's RunContext (the run store)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx

    def on_log(self, step: int, values: dict[str, float]) -> None:
        self.ctx.log_metrics(step, values)

    def on_progress(self, step: int, total: int) -> None:
        self.ctx.set_progress(step / max(total, 1), f"step {step}/{total}")

    def on_snapshot(self, step: int, payload: dict) -> None:
        self.ctx.add_snapshot(step, payload)

    def should_stop(self) -> bool:
        return self.ctx.cancelled()


def _trainer(config: dict[str, Any], workspace: Workspace, reporter: Reporter | None) -> FusionTrainer:
    trainer = FusionTrainer(
        model_config=ModelConfig.from_dict(config.get("model_config") or {}),
        training_config=TrainingConfig.from_dict(config.get("training_config") or {}),
        workspace=workspace,
        data_dir=config.get("data_dir"),
        reporter=reporter,
    )
    if config.get("custom_task"):
        trainer.add_custom_task(task_from_file(**config["custom_task"]))
    return trainer


def execute(kind: str, config: dict[str, Any], workspace: Workspace, reporter: Reporter | None = None) -> TrainResult:
    """Run one job in this process (the worker's executors and the test fixtures both come through here)."""
    trainer = _trainer(config, workspace, reporter)
    if kind == "train_adapter":
        return trainer.train_adapter(
            config["task"],
            AdapterConfig.from_dict(config.get("adapter_config") or {}),
            name=config.get("name"),
        )
    if kind == "train_fusion":
        fusion = config.get("fusion_config") or {}
        fusion = FusionConfig.from_dict({**fusion, "adapter_names": list(config["adapters"])})
        return trainer.train_fusion(
            config["target_task"], list(config["adapters"]), fusion_config=fusion, name=config.get("name")
        )
    raise ValueError(f"unknown job kind {kind!r}")


def _run(kind: str, run, ctx) -> tuple[dict, dict]:
    from fusionlab.worker import RunCancelled

    try:
        result = execute(kind, run.config, ctx.workspace, ContextReporter(ctx))
    except TrainingCancelled as err:
        raise RunCancelled(str(err)) from err
    summary = result.summary()
    final = {
        "metrics": summary["metrics"],
        "majority_baseline": summary["majority_baseline"],
        "steps": summary["steps"],
        "best_step": summary["best_step"],
    }
    if result.evaluation.fusion_stats is not None:
        final["fusion_stats"] = result.evaluation.fusion_stats.to_dict()
    final["confusion_matrix"] = result.evaluation.confusion_matrix
    final["label_names"] = result.evaluation.label_names
    return final, {"checkpoint": str(result.path), "kind": result.kind, "name": result.name}


def run_train_adapter(run, ctx) -> tuple[dict, dict]:
    """Worker executor for ``train_adapter`` runs."""
    return _run("train_adapter", run, ctx)


def run_train_fusion(run, ctx) -> tuple[dict, dict]:
    """Worker executor for ``train_fusion`` runs."""
    return _run("train_fusion", run, ctx)
