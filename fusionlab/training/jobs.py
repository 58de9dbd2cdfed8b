"""The worker's executors for training runs: one :class:`~fusionlab.runspec.AdapterRun` or
:class:`~fusionlab.runspec.FusionRun`, read back from the run store, trained in the worker's process.

The CLI's ``--inline``, the demo and the tests come through :func:`execute` too, so a run means the same
thing however it is started.
"""

from __future__ import annotations

from fusionlab.devices import require_device
from fusionlab.run_context import RunCancelled, RunContext
from fusionlab.runspec import AdapterRun, FusionRun, parse_run
from fusionlab.runstore import Run
from fusionlab.training.loop import Reporter, TrainingCancelled
from fusionlab.training.trainer import FusionTrainer, TrainResult
from fusionlab.workspace import Workspace


class ContextReporter(Reporter):
    """Forwards training events to a worker's RunContext (the run store)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def on_log(self, step: int, values: dict[str, float]) -> None:
        self.ctx.log_metrics(step, values)

    def on_progress(self, step: int, total: int) -> None:
        self.ctx.set_progress(step / max(total, 1), f"step {step}/{total}")

    def on_snapshot(self, step: int, payload: dict) -> None:
        self.ctx.add_snapshot(step, payload)

    def should_stop(self) -> bool:
        return self.ctx.cancelled()


def trainer_for(run: AdapterRun | FusionRun, workspace: Workspace, reporter: Reporter | None = None) -> FusionTrainer:
    """The trainer a run's configs describe, with the run's own data file registered if it has one."""
    trainer = FusionTrainer(run.model_config, run.training_config, workspace, run.data_dir, reporter)
    if run.custom_task is not None:
        trainer.add_custom_task(run.custom_task.load())
    return trainer


def execute(run: AdapterRun | FusionRun, workspace: Workspace, reporter: Reporter | None = None) -> TrainResult:
    """Train one run in this process and save it under ``run.name``."""
    trainer = trainer_for(run, workspace, reporter)
    if isinstance(run, AdapterRun):
        return trainer.train_adapter(run.task, run.adapter_config, name=run.name)
    return trainer.train_fusion(run.target_task, run.adapters, fusion_config=run.fusion_config, name=run.name)


def run_training_job(run: Run, ctx: RunContext) -> tuple[dict, dict]:
    """Worker executor for ``train_adapter`` and ``train_fusion`` runs."""
    spec = parse_run(run.kind, run.config)
    require_device(ctx.device)
    try:
        result = execute(spec, ctx.workspace, ContextReporter(ctx)).to_run_result()
    except TrainingCancelled as err:
        raise RunCancelled(str(err)) from err
    return result.to_dict(), result.artifacts()
