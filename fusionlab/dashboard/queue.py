"""Turning the Train page's form values into queued runs, and reading the queue back for its live section.

The page stays a thin layer of widgets: everything that decides *what* is queued lives here, so it is tested
without a browser. A config is validated by building the real :class:`AdapterConfig`, :class:`FusionConfig`,
:class:`TrainingConfig` and :class:`ModelConfig` before anything is enqueued, so a bad value is reported (as the
config's ``ValueError``, which names the field) while the user is still looking at the form, instead of
failing minutes later in the worker. The stored config holds the *full* validated dicts, defaults included, so
the run history records exactly what ran even if a default changes later.

Queuing never reads and rewrites shared state: each run is one atomic :meth:`RunStore.enqueue`, so two
browser tabs (two Streamlit sessions, i.e. two threads) queuing at the same moment can neither lose nor
duplicate a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from fusionlab.checkpoint import read_meta
from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig, TrainingConfig
from fusionlab.data.tasks import TASKS, get_task
from fusionlab.pack.store import own_name
from fusionlab.runstore import METRIC_COLUMNS, QUEUED, RUNNING, TERMINAL_STATUSES, Run, RunStore, Snapshot
from fusionlab.worker import worker_running
from fusionlab.workspace import Workspace

TRAIN_ADAPTER = "train_adapter"
TRAIN_FUSION = "train_fusion"


@dataclass(frozen=True)
class Limits:
    """How long and on how much data a run trains: the form fields shared by adapter and fusion runs.

    The defaults are sized like the classroom demo's runs (a couple of minutes on a laptop CPU), so a first click
    gives a run that ends while the user is still watching. ``eval_steps``/``snapshot_steps`` of ``None`` mean
    "only at the end".
    """

    max_steps: int = 100
    max_train_samples: int | None = 4000
    max_eval_samples: int | None = 400
    max_length: int = 128
    batch_size: int = 16
    learning_rate: float = 1e-3
    eval_steps: int | None = 40
    snapshot_steps: int | None = None

    @classmethod
    def from_form(
        cls,
        *,
        max_steps: int,
        max_train_samples: int,
        max_eval_samples: int,
        max_length: int,
        batch_size: int,
        learning_rate: float,
        eval_steps: int,
        snapshot_steps: int = 0,
    ) -> Limits:
        """Limits from form fields, where 0 in an optional field means "no limit" or "only at the end".

        A number box cannot be left empty, so 0 stands for ``None``; any other value, negative ones included,
        is passed on for the configs to judge, so the form never duplicates (and drifts from) their rules.
        """

        def optional(value: int) -> int | None:
            return None if value == 0 else value

        return cls(
            max_steps=max_steps,
            max_train_samples=optional(max_train_samples),
            max_eval_samples=optional(max_eval_samples),
            max_length=max_length,
            batch_size=batch_size,
            learning_rate=learning_rate,
            eval_steps=optional(eval_steps),
            snapshot_steps=optional(snapshot_steps),
        )

    def training_config(self) -> dict:
        """The validated :class:`TrainingConfig` as a dict (``ValueError`` naming the field if invalid).

        Loss is logged about four times per run (at most every ten steps), so even a very short run has a
        loss curve to show.
        """
        logging_steps = max(1, min(10, self.max_steps // 4)) if self.max_steps > 0 else 10
        return TrainingConfig(
            learning_rate=self.learning_rate,
            max_steps=self.max_steps,
            per_device_train_batch_size=self.batch_size,
            max_train_samples=self.max_train_samples,
            max_eval_samples=self.max_eval_samples,
            eval_steps=self.eval_steps,
            snapshot_steps=self.snapshot_steps,
            logging_steps=logging_steps,
        ).to_dict()

    def model_config(self) -> dict:
        """The validated :class:`ModelConfig` (the default encoder, this ``max_length``) as a dict."""
        return ModelConfig(max_length=self.max_length).to_dict()


FUSION_LIMITS = Limits(max_steps=100, learning_rate=1e-3, snapshot_steps=10)
"""Defaults of the fusion form: the classroom demo's fusion stage, with weight snapshots for the live view."""


class MissingAdaptersError(ValueError):
    """A fusion names adapters that are neither trained in the workspace nor queued or running."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        names = ", ".join(self.missing)
        super().__init__(
            f"adapter(s) {names} are neither trained in this workspace nor queued or running as adapter runs; "
            "queue them first"
        )


def adapter_run_config(task: str, adapter_size: int, non_linearity: str, limits: Limits, data_dir: str | None) -> dict:
    """The JSON config of a ``train_adapter`` run for ``task`` (see :mod:`fusionlab.training.jobs`).

    Raises ``ValueError`` for an unknown task or any invalid value; the adapter is named after its task.
    """
    get_task(task)
    adapter = AdapterConfig(adapter_size=adapter_size, task_name=task, non_linearity=non_linearity)
    return {
        "task": task,
        "name": task,
        "adapter_config": adapter.to_dict(),
        "training_config": limits.training_config(),
        "model_config": limits.model_config(),
        "data_dir": data_dir,
    }


def fusion_name(name: str | None, target_task: str, method: str) -> str:
    """The fusion's checkpoint name: the one typed, else ``<target>-<method>`` as the CLI and the demo name it,
    so a fusion is called the same whichever way it was queued."""
    return (name or "").strip() or f"{target_task}-{method}"


def default_target(adapters: Sequence[str]) -> str:
    """The target task a fusion form proposes: the first chosen adapter's task (adapters are named after
    their task, and by convention the target's own adapter comes first), else the demo's target."""
    return next((name for name in adapters if name in TASKS), "rte")


def fusion_run_config(
    target_task: str,
    adapters: Sequence[str],
    *,
    method: str = "attention",
    heads: int = 1,
    temperature: float = 1.0,
    value_regularization: float = 0.0,
    limits: Limits = FUSION_LIMITS,
    data_dir: str | None = None,
    name: str | None = None,
) -> dict:
    """The JSON config of a ``train_fusion`` run over ``adapters`` for ``target_task``.

    Raises ``ValueError`` for an unknown target task or an invalid value. Whether the name can be a checkpoint
    directory and the adapters exist is :func:`queue_fusion_run`'s business (it needs the workspace).
    """
    get_task(target_task)
    fusion = FusionConfig(
        fusion_method=method,
        adapter_names=list(adapters),
        num_attention_heads=heads,
        temperature=temperature,
        value_regularization=value_regularization,
        target_task=target_task,
    )
    return {
        "target_task": target_task,
        "adapters": list(adapters),
        "name": fusion_name(name, target_task, method),
        "fusion_config": fusion.to_dict(),
        "training_config": limits.training_config(),
        "model_config": limits.model_config(),
        "data_dir": data_dir,
    }


def queue_adapter_runs(
    store: RunStore,
    tasks: Sequence[str],
    adapter_sizes: Mapping[str, int],
    non_linearity: str,
    limits: Limits,
    data_dir: str | None,
    workspace: Workspace | None = None,
) -> list[int]:
    """Queue one adapter run per task and return their ids, in ``tasks`` order.

    Every config is validated before the first is enqueued, so a bad value for one task queues nothing rather
    than half the selection. ``adapter_sizes`` maps each task to its bottleneck size (default: AdapterConfig's).
    In ``workspace``, a task whose name the pack's read-only adapter holds is saved as ``<task>-2`` (etc.).
    """
    if not tasks:
        raise ValueError("choose at least one task to train an adapter for")
    configs = [
        adapter_run_config(task, adapter_sizes.get(task, AdapterConfig.adapter_size), non_linearity, limits, data_dir)
        for task in tasks
    ]
    if workspace is not None:
        for config in configs:
            config["name"] = own_name(workspace, config["name"])
    return [store.enqueue(TRAIN_ADAPTER, config["name"], config) for config in configs]


def pending_adapter_names(store: RunStore) -> list[str]:
    """Names of the adapters that queued or running ``train_adapter`` runs will produce, sorted."""
    runs = store.list_runs(status=(QUEUED, RUNNING), kind=TRAIN_ADAPTER)
    return sorted({run.config.get("name") or run.config["task"] for run in runs})


def available_adapters(workspace: Workspace, store: RunStore) -> list[str]:
    """Adapters a fusion may use: those trained in the workspace plus those queued or running, sorted."""
    return sorted(set(workspace.list_adapters()) | set(pending_adapter_names(store)))


def adapter_non_linearities(workspace: Workspace, store: RunStore, names: Sequence[str]) -> dict[str, str]:
    """The non-linearity each named adapter will have when a fusion queued now runs.

    That is the one of the last queued or running adapter run of that name (it executes before the fusion and
    replaces the checkpoint), else the trained checkpoint's. Adapters that are neither are left out.
    """
    trained = set(workspace.list_adapters())
    found = {
        name: read_meta(workspace.adapter_dir(name))["adapter_config"]["non_linearity"]
        for name in names
        if name in trained
    }
    pending = sorted(store.list_runs(status=(QUEUED, RUNNING), kind=TRAIN_ADAPTER), key=lambda run: run.id)
    for run in pending:
        name = run.config.get("name") or run.config["task"]
        if name in names:
            found[name] = (run.config.get("adapter_config") or {}).get("non_linearity", AdapterConfig.non_linearity)
    return {name: found[name] for name in names if name in found}


def queue_fusion_run(
    store: RunStore,
    workspace: Workspace,
    target_task: str,
    adapters: Sequence[str],
    *,
    method: str = "attention",
    heads: int = 1,
    temperature: float = 1.0,
    value_regularization: float = 0.0,
    limits: Limits = FUSION_LIMITS,
    data_dir: str | None = None,
    name: str | None = None,
) -> int:
    """Validate and queue one fusion run; returns its id.

    Raises ``ValueError`` as :func:`fusion_run_config` does, for a name that cannot be a directory, or for
    adapters with different non-linearities (fusion runs all adapters of a layer as one batched module, so the
    run would fail in the worker), and :class:`MissingAdaptersError` when an adapter is neither trained nor
    queued or running: the worker executes runs in queue order, so a queued adapter run will have finished
    before this fusion starts. The check guides the user rather than guarantees: an adapter run cancelled in another tab at the same instant
    lets the fusion through, and the worker then fails it with a clear error; no run is lost or duplicated.
    """
    config = fusion_run_config(
        target_task,
        adapters,
        method=method,
        heads=heads,
        temperature=temperature,
        value_regularization=value_regularization,
        limits=limits,
        data_dir=data_dir,
        name=name,
    )
    workspace.fusion_dir(config["name"])  # a ValueError for names such as "../x" that would escape fusions/
    available = set(available_adapters(workspace, store))
    missing = [adapter for adapter in adapters if adapter not in available]
    if missing:
        raise MissingAdaptersError(missing)
    activations = adapter_non_linearities(workspace, store, adapters)
    if len(set(activations.values())) > 1:
        used = ", ".join(f"{name} uses {activation}" for name, activation in activations.items())
        raise ValueError(f"adapters fused together must share one non-linearity, but {used}")
    return store.enqueue(TRAIN_FUSION, config["name"], config)


@dataclass(frozen=True)
class QueuedRun:
    """A queued run and its 1-based place in the queue (1 runs next)."""

    run: Run
    position: int


@dataclass(frozen=True)
class QueueView:
    """Everything the live section draws, read from the store in one go so a refresh shows one moment.

    ``metrics`` and ``snapshots`` belong to ``active`` (empty when nothing runs); ``last_ended`` is the most
    recently ended run, so a run that finished or failed between two refreshes is still reported.
    """

    queued: list[QueuedRun]
    active: Run | None
    metrics: pd.DataFrame
    snapshots: list[Snapshot]
    last_ended: Run | None
    worker_running: bool

    @property
    def stalled(self) -> bool:
        """Runs wait but no worker serves the queue (it idled out, crashed, or the runs came from elsewhere)."""
        return bool(self.queued) and self.active is None and not self.worker_running

    @classmethod
    def load(cls, store: RunStore, workspace: Workspace, device: str = "cpu") -> QueueView:
        """Read the queue, the running run with its metrics and snapshots, the last ended run, and whether a
        worker serves ``device`` in ``workspace``.

        Positions come from one listing (oldest queued first) rather than one query per run, so they are
        consistent with each other even while other sessions enqueue or cancel.
        """
        queued_runs = sorted(store.list_runs(status=QUEUED), key=lambda run: run.id)
        active = store.active_run()
        # The worker may claim a run between the two reads: then it is listed as running, not also as queued
        # (the page would draw its Cancel button twice, under one key, and fail).
        queued_runs = [run for run in queued_runs if active is None or run.id != active.id]
        queued = [QueuedRun(run, position) for position, run in enumerate(queued_runs, start=1)]
        metrics = store.metrics(active.id) if active else pd.DataFrame(columns=METRIC_COLUMNS)
        snapshots = store.snapshots(active.id) if active else []
        ended = store.list_runs(status=TERMINAL_STATUSES, limit=1)
        running = worker_running(workspace, device)
        return cls(queued, active, metrics, snapshots, ended[0] if ended else None, running)

    @property
    def progress(self) -> tuple[float, str]:
        """The active run's progress in [0, 1] and a one-line message for the progress bar."""
        run = self.active
        if run is None:
            return 0.0, "idle"
        if run.cancel_requested:
            return run.progress, "cancel requested: stopping at the next step"
        return run.progress, run.message or "starting (loading the model and data)"

    @property
    def latest_snapshot(self) -> Snapshot | None:
        """The active run's most recent fusion-weight snapshot (``None`` before the first)."""
        return self.snapshots[-1] if self.snapshots else None
