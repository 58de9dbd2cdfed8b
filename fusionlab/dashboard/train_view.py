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

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from fusionlab import worker
from fusionlab.base_model import check_max_length
from fusionlab.budgets import CLASSROOM, resolve_budget
from fusionlab.checkpoint import read_meta
from fusionlab.config import NON_LINEARITIES, AdapterConfig, FusionConfig
from fusionlab.dashboard.ownership import NameTaken, check_free, personal_name
from fusionlab.data.tasks import TASKS, get_task
from fusionlab.devices import AUTO
from fusionlab.fusion.registry import fusion_class, fusion_methods
from fusionlab.pack.store import is_pack_artifact, own_name
from fusionlab.processes import pid_alive
from fusionlab.runspec import (
    TRAIN_ADAPTER,
    TRAIN_FUSION,
    AdapterRun,
    Budget,
    FusionRun,
    RunKind,
    fusion_name,
    parse_run,
    spec_class,
)
from fusionlab.runstore import (
    CANCELLED,
    FAILED,
    METRIC_COLUMNS,
    QUEUED,
    RUNNING,
    TERMINAL_STATUSES,
    QuotaExceeded,
    Run,
    RunStore,
    Snapshot,
)
from fusionlab.worker import worker_running
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

CLASSROOM_PROFILE = "classroom"

__all__ = [  # what the Train page uses; it imports nothing from the core directly
    "ADAPTER_LIMITS",
    "CANCELLED",
    "DEFAULT_ADAPTER_SIZE",
    "FAILED",
    "FUSION_LIMITS",
    "NON_LINEARITIES",
    "TRAIN_ADAPTER",
    "TRAIN_FUSION",
    "Limits",
    "QueueView",
    "Requester",
    "available_adapters",
    "default_target",
    "describe_task",
    "ensure_worker",
    "fusion_class",
    "fusion_methods",
    "fusion_name",
    "fusion_run_config",
    "own_name",
    "pending_adapter_names",
    "queue_adapter_runs",
    "queue_fusion_run",
    "task_names",
]

DEFAULT_ADAPTER_SIZE = AdapterConfig.adapter_size


def ensure_worker(workspace: Workspace) -> bool:
    """Start the workspace's worker unless one is running (looked up at call time, so tests can stand in)."""
    return worker.ensure_worker(workspace)


def task_names() -> list[str]:
    """The built-in tasks the Train page offers, sorted."""
    return sorted(TASKS)


def describe_task(name: str) -> str:
    """A task as the pickers show it: its name and what it is."""
    return f"{name} — {TASKS[name].description}" if TASKS[name].description else name


@dataclass(frozen=True)
class Requester:
    """Who queues a run from the Train page, how many pending runs they may have (None: no limit), and whether
    they are ``guarded``: a student on a classroom server, whose default names carry their name and who may not
    replace what another visitor's run holds (:mod:`fusionlab.dashboard.ownership`)."""

    owner: str | None = None
    name: str | None = None
    limit: int | None = None
    guarded: bool = False

    def default_name(self, workspace: Workspace, base: str, kind: str = "adapter") -> str:
        """The name a run gets when the visitor leaves it empty: ``<base>-<visitor>`` for a guarded visitor,
        else ``base`` (or ``base-2``... beside the pack's read-only artifact of that name)."""
        return personal_name(base, self.name) if self.guarded else own_name(workspace, base, kind)

    def check_free(self, store: RunStore, workspace: Workspace, run: AdapterRun | FusionRun, default: str) -> None:
        """A guarded visitor's run may not save over another visitor's (or the teacher's) adapter or fusion."""
        if self.guarded:
            check_free(store, workspace, run.kind, run.name, self.owner, default)

    def name_note(
        self, store: RunStore, workspace: Workspace, kind: RunKind, name: str, default: str
    ) -> tuple[bool, str] | None:
        """What the form says under a name before it is queued: ``(True, why it is refused)``, ``(False, what
        the run will replace)``, or ``None`` for a new name. The same rules as queueing, so hint and outcome agree."""
        artifact = spec_class(kind).artifact
        directory = workspace.adapter_dir(name) if kind == TRAIN_ADAPTER else workspace.fusion_dir(name)
        if is_pack_artifact(directory):
            return (
                True,
                f"{name} is the pretrained pack's {artifact} (read-only): leave the name empty or choose another",
            )
        if self.guarded:
            try:
                check_free(store, workspace, kind, name, self.owner, default)
            except NameTaken as err:
                return True, str(err)
        if (directory / CHECKPOINT_MARKER).is_file():
            return False, f"A {artifact} named {name} exists; this run replaces it when it ends."
        return None

    def check_room(self, store: RunStore, adding: int) -> None:
        """Refuse the whole selection at once when it would take the requester past their quota."""
        if self.owner is not None and self.limit is not None:
            pending = store.pending_count(self.owner)
            if pending + adding > self.limit:
                raise QuotaExceeded(pending, self.limit)

    def enqueue(self, store: RunStore, run: AdapterRun | FusionRun) -> int:
        return store.enqueue(run.kind, run.name, run.to_dict(), self.owner, self.name, self.limit)


@dataclass
class Limits(Budget):
    """The Train page's budget, defaulting to the ``classroom`` profile of :mod:`fusionlab.budgets` (a couple of
    minutes on a laptop CPU), so a first click gives a run that ends while the user is still watching; the same
    run ``fusionlab train-adapter TASK --profile classroom`` queues."""

    steps: int = CLASSROOM.steps
    learning_rate: float = CLASSROOM.learning_rate
    max_train_samples: int | None = CLASSROOM.max_train_samples
    max_eval_samples: int | None = CLASSROOM.max_eval_samples
    eval_steps: int | None = CLASSROOM.eval_steps

    @classmethod
    def of(cls, budget: Budget) -> Limits:
        return cls(**dataclasses.asdict(budget))

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
            steps=max_steps,
            max_train_samples=optional(max_train_samples),
            max_eval_samples=optional(max_eval_samples),
            max_length=max_length,
            batch_size=batch_size,
            learning_rate=learning_rate,
            eval_steps=optional(eval_steps),
            snapshot_steps=optional(snapshot_steps),
        )


ADAPTER_LIMITS = Limits.of(resolve_budget("rte", "adapter", CLASSROOM_PROFILE))
"""Defaults of the adapter form: the classroom profile (the same for every task)."""
FUSION_LIMITS = Limits.of(resolve_budget("rte", "fusion", CLASSROOM_PROFILE))
"""Defaults of the fusion form: the classroom profile's fusion stage, with weight snapshots for the live view."""


class MissingAdaptersError(ValueError):
    """A fusion names adapters that are neither trained in the workspace nor queued or running."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        names = ", ".join(self.missing)
        super().__init__(
            f"adapter(s) {names} are neither trained in this workspace nor queued or running as adapter runs; "
            "queue them first"
        )


def adapter_run_config(
    task: str, adapter_size: int, non_linearity: str, limits: Budget, data_dir: str | None
) -> AdapterRun:
    """The ``train_adapter`` run for ``task``, named after its task.

    Raises ``ValueError`` for an unknown task or any invalid value (the message names the field).
    """
    get_task(task)
    check_max_length(limits.max_length, limits.model)
    return AdapterRun(
        task=task,
        adapter_config=AdapterConfig(adapter_size=adapter_size, task_name=task, non_linearity=non_linearity),
        training_config=limits.training_config(),
        model_config=limits.model_config(),
        data_dir=data_dir,
    )


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
    limits: Budget = FUSION_LIMITS,
    data_dir: str | None = None,
    name: str | None = None,
) -> FusionRun:
    """The ``train_fusion`` run over ``adapters`` for ``target_task`` (named ``<target>-<method>`` by default).

    Raises ``ValueError`` for an unknown target task or an invalid value. Whether the name can be a checkpoint
    directory and the adapters exist is :func:`queue_fusion_run`'s business (it needs the workspace).
    """
    get_task(target_task)
    check_max_length(limits.max_length, limits.model)
    return FusionRun(
        target_task=target_task,
        adapters=list(adapters),
        name=name or "",
        fusion_config=FusionConfig(
            fusion_method=method,
            adapter_names=list(adapters),
            num_attention_heads=heads,
            temperature=temperature,
            value_regularization=value_regularization,
            target_task=target_task,
        ),
        training_config=limits.training_config(),
        model_config=limits.model_config(),
        data_dir=data_dir,
    )


def queue_adapter_runs(
    store: RunStore,
    tasks: Sequence[str],
    adapter_sizes: Mapping[str, int],
    non_linearity: str,
    limits: Limits,
    data_dir: str | None,
    workspace: Workspace | None = None,
    requester: Requester | None = None,
) -> list[int]:
    """Queue one adapter run per task and return their ids, in ``tasks`` order.

    Every config is validated before the first is enqueued, so a bad value for one task queues nothing rather
    than half the selection. ``adapter_sizes`` maps each task to its bottleneck size (default: AdapterConfig's).
    In ``workspace``, a task whose name the pack's read-only adapter holds is saved as ``<task>-2`` (etc.).
    """
    if not tasks:
        raise ValueError("choose at least one task to train an adapter for")
    runs = [
        adapter_run_config(task, adapter_sizes.get(task, AdapterConfig.adapter_size), non_linearity, limits, data_dir)
        for task in tasks
    ]
    requester = requester or Requester()
    if workspace is not None:
        runs = [dataclasses.replace(run, name=requester.default_name(workspace, run.name)) for run in runs]
        for run in runs:
            requester.check_free(store, workspace, run, run.name)
    requester.check_room(store, len(runs))
    return [requester.enqueue(store, run) for run in runs]


def _pending_adapter_runs(store: RunStore) -> list[tuple[int, AdapterRun]]:
    """``(run id, run)`` of the queued or running adapter runs; one whose config is invalid is left out (the
    worker fails it with the reason, so it will produce no adapter)."""
    pending = []
    for run in store.list_runs(status=(QUEUED, RUNNING), kind=TRAIN_ADAPTER):
        try:
            spec = parse_run(run.kind, run.config)
        except ValueError:
            continue
        if isinstance(spec, AdapterRun):
            pending.append((run.id, spec))
    return pending


def pending_adapter_names(store: RunStore) -> list[str]:
    """Names of the adapters that queued or running ``train_adapter`` runs will produce, sorted."""
    return sorted({spec.name for _, spec in _pending_adapter_runs(store)})


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
    for _, spec in sorted(_pending_adapter_runs(store), key=lambda pair: pair[0]):
        if spec.name in names:
            found[spec.name] = spec.adapter_config.non_linearity
    return {name: found[name] for name in names if name in found}


def queue_fusion_run(store: RunStore, workspace: Workspace, run: FusionRun, requester: Requester | None = None) -> int:
    """Queue one fusion run (from :func:`fusion_run_config`); returns its id.

    Raises ``ValueError`` for a name that cannot be a directory, or for adapters with different
    non-linearities (fusion runs all adapters of a layer as one batched module, so the run would fail in the
    worker), and :class:`MissingAdaptersError` when an adapter is neither trained nor queued or running: the
    worker executes runs in queue order, so a queued adapter run will have finished before this fusion starts.
    The check guides the user rather than guarantees: an adapter run cancelled in another tab at the same
    instant lets the fusion through, and the worker then fails it with a clear error; no run is lost or
    duplicated.
    """
    adapters = run.adapters
    requester = requester or Requester()
    if is_pack_artifact(workspace.fusion_dir(run.name)):  # also a ValueError for names such as "../x"
        raise ValueError(f"{run.name!r} is the pretrained pack's fusion (read-only): choose another name")
    workspace.fusion_dir(run.name)  # a ValueError for names such as "../x" that would escape fusions/
    requester.check_free(
        store, workspace, run, requester.default_name(workspace, fusion_name(run.target_task, run.method), "fusion")
    )
    available = set(available_adapters(workspace, store))
    missing = [adapter for adapter in adapters if adapter not in available]
    if missing:
        raise MissingAdaptersError(missing)
    activations = adapter_non_linearities(workspace, store, adapters)
    if len(set(activations.values())) > 1:
        used = ", ".join(f"{name} uses {activation}" for name, activation in activations.items())
        raise ValueError(f"adapters fused together must share one non-linearity, but {used}")
    return requester.enqueue(store, run)


ETA_AFTER = 0.05
"""The share of a run's steps after which the Train page estimates the time left (before, too noisy to say)."""


def clock(seconds: float) -> str:
    """A duration as a person reads it: ``0:42``, ``12:05``, ``1:02:09``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


STALL_AFTER_S = 20.0
"""How long queued runs may wait with no worker before the Train page says so (a worker starts in a few seconds)."""


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

    def stalled(self, now: float | None = None) -> bool:
        """Runs have waited :data:`STALL_AFTER_S` with no worker serving the queue (it idled out, crashed, or the
        runs came from elsewhere). A run queued a moment ago is not stalled: its worker is still starting (it
        takes a few seconds to import torch and take its lock), and a warning then would be a false alarm."""
        if not self.queued or self.active is not None or self.worker_running:
            return False
        oldest = min(item.run.created_at for item in self.queued)
        return (time.time() if now is None else now) - oldest > STALL_AFTER_S

    @classmethod
    def load(cls, store: RunStore, workspace: Workspace, device: str = AUTO) -> QueueView:
        """Read the queue, the running run with its metrics and snapshots, the last ended run, and whether a
        worker serves ``device`` in ``workspace``.

        Positions come from one listing (oldest queued first) rather than one query per run, so they are
        consistent with each other even while other sessions enqueue or cancel.
        """
        store.mark_dead_runs_failed(pid_alive)  # a worker killed with SIGKILL shows as failed at the next poll
        queued_runs = sorted(store.list_runs(status=QUEUED), key=lambda run: run.id)
        active = store.active_run()
        # The worker may claim a run between the two reads: then it is listed as running, not also as queued
        # (the page would draw its Cancel button twice, under one key, and fail).
        queued_runs = [run for run in queued_runs if active is None or run.id != active.id]
        queued = [QueuedRun(run, position) for position, run in enumerate(queued_runs, start=1)]
        metrics = store.metrics(active.id) if active else pd.DataFrame(columns=METRIC_COLUMNS)
        snapshots = store.snapshots(active.id) if active else []
        ended = store.list_runs(status=TERMINAL_STATUSES, limit=1, by_end=True)
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

    def timing(self, now: float | None = None) -> str:
        """How long the active run has trained and, once it is far enough in to say, about how long it has left
        (a straight extrapolation of its progress, which is steps: evaluations make the end a little later)."""
        run = self.active
        if run is None or run.started_at is None:
            return ""
        elapsed = max(0.0, (time.time() if now is None else now) - run.started_at)
        text = f"running for {clock(elapsed)}"
        if ETA_AFTER <= run.progress < 1:
            text += f" · about {clock(elapsed * (1 - run.progress) / run.progress)} left"
        return text

    @property
    def latest_snapshot(self) -> Snapshot | None:
        """The active run's most recent fusion-weight snapshot (``None`` before the first)."""
        return self.snapshots[-1] if self.snapshots else None
