"""The Home page's view of a workspace: what is trained, how well, what is running, and the demo button.

Everything is read from disk and from the run store on each call (no caching): a worker in another process
may finish a checkpoint at any moment, and reading a few small JSON files is cheap.

Preparing the demo queues six training runs. Two browser tabs clicking at once must not queue them twice, and
the run store offers no "enqueue unless present" transaction, so the check and the enqueue happen under an
exclusive file lock in the workspace: every dashboard process and thread takes the same lock, so the second
click sees the first one's runs.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fusionlab.checkpoint import CheckpointError, adapter_mismatches, pinned_adapter_dir, read_meta
from fusionlab.config import ModelConfig
from fusionlab.dashboard.errors import DashboardError
from fusionlab.demo import PROFILES, demo_runs, enqueue_demo, missing_adapters, missing_data
from fusionlab.housekeeping import ADAPTER, FUSION, RemovalRefused, delete_artifact, prune_versions, unused_versions
from fusionlab.metrics import metric_label
from fusionlab.pack.store import is_pack_artifact, reported_of
from fusionlab.processes import pid_alive
from fusionlab.reported import Reported
from fusionlab.runspec import AdapterRun, FusionRun, parse_run
from fusionlab.runstore import QUEUED, RUNNING, Run, RunStore
from fusionlab.worker import ensure_worker
from fusionlab.workspace import Workspace

DEMO_PROFILE = "classroom"
DEMO_LOCK = "demo-queue.lock"


@dataclass(frozen=True)
class CheckpointRow:
    """One adapter or fusion as the Home page lists it; ``problem`` says why it cannot be used, if it cannot."""

    name: str
    kind: str
    task: str | None
    method: str | None  # fusions only
    adapters: tuple[str, ...]  # fusions only
    metric: str | None
    score: float | None
    baseline: float | None
    problem: str | None = None
    from_pack: bool = False
    older_versions: tuple[str, ...] = ()  # fusions: adapters it uses an earlier version of (a newer one exists)
    reported: Reported = field(default_factory=Reported)
    """The score with its interval, the paired comparison with the adapter, and what selected the step."""

    def as_dict(self) -> dict[str, Any]:
        """A table row (the columns the Home page shows): every score with its 95 % interval and example count."""
        row: dict[str, Any] = {"name": self.name, "task": self.task}
        if self.kind == "fusion":
            row |= {"method": self.method, "adapters": ", ".join(self.adapters)}
        row |= {
            "dev metric": metric_label(self.metric) if self.metric else None,
            "score": self.score,
            "95 % interval (n)": self.reported.score_text(),
        }
        if self.kind == "fusion":
            row["its adapter alone"] = self.reported.own_text()
            row["fusion − adapter (paired)"] = self.reported.difference_text()
        row["majority baseline"] = self.baseline
        row["beyond majority?"] = self.reported.learned_text()
        row["step chosen on"] = self.reported.selection_short() if self.score is not None else None
        row["source"] = "pack (read-only)" if self.from_pack else "trained here"
        row["status"] = self.problem or "ready"
        if self.older_versions and not self.problem:
            row["status"] = f"ready (trained on an earlier {', '.join(self.older_versions)}; a newer version exists)"
        return row


@dataclass(frozen=True)
class WorkspaceSummary:
    """What is on disk; the run in progress comes from :func:`run_status`, which the page polls."""

    root: str
    base_model: str
    device: str
    adapters: tuple[CheckpointRow, ...]
    fusions: tuple[CheckpointRow, ...]


def _scores(reported: Reported) -> tuple[str | None, float | None, float | None]:
    """The row's metric, score and majority baseline: what the checkpoint reports (a pack artifact's card: the
    saved weights on the full dev split)."""
    return reported.metric, reported.value, reported.baseline


def _adapter_row(workspace: Workspace, name: str) -> tuple[CheckpointRow, dict | None]:
    try:
        meta = read_meta(workspace.adapter_dir(name))
    except CheckpointError as err:
        return CheckpointRow(name, "adapter", None, None, (), None, None, None, str(err)), None
    extra = meta.get("extra", {})
    directory = workspace.adapter_dir(name)
    reported = reported_of(directory, extra)
    row = CheckpointRow(
        name, "adapter", extra.get("task"), None, (), *_scores(reported), from_pack=is_pack_artifact(directory)
    )
    return dataclasses.replace(row, reported=reported), meta


def _fusion_problem(
    workspace: Workspace, meta: dict, adapter_hashes: dict[str, str | None]
) -> tuple[str | None, tuple[str, ...]]:
    """Why a fusion cannot be loaded (an adapter missing, unreadable, or retrained with its old version gone),
    and which adapters it uses an earlier, kept version of — from metadata alone.

    ``adapter_hashes`` maps each adapter directory to the content hash it records (None: unreadable).
    """
    missing, changed = adapter_mismatches(meta, adapter_hashes)
    pinned = {e["name"]: e["content_hash"] for e in meta["adapters"]}
    older = tuple(n for n in changed if pinned_adapter_dir(workspace.adapter_dir(n), pinned[n]) is not None)
    lost = [n for n in changed if n not in older]
    problems = []
    if missing:
        problems.append(f"missing adapter{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if lost:
        problems.append(
            f"adapter{'s' if len(lost) > 1 else ''} {', '.join(lost)} changed and the version it was trained on is gone; retrain it"
        )
    return "; ".join(problems) or None, older


def _fusion_row(workspace: Workspace, name: str, adapter_hashes: dict[str, str | None]) -> CheckpointRow:
    try:
        meta = read_meta(workspace.fusion_dir(name))
    except CheckpointError as err:
        return CheckpointRow(name, "fusion", None, None, (), None, None, None, str(err))
    extra = meta.get("extra", {})
    config = meta["fusion_config"]
    directory = workspace.fusion_dir(name)
    reported = reported_of(directory, extra)
    problem, older = _fusion_problem(workspace, meta, adapter_hashes)
    return CheckpointRow(
        name,
        "fusion",
        extra.get("task") or config.get("target_task"),
        config["fusion_method"],
        tuple(config["adapter_names"]),
        *_scores(reported),
        problem=problem,
        from_pack=is_pack_artifact(directory),
        older_versions=older,
        reported=reported,
    )


def demo_description(profile: str = "classroom") -> str:
    """The demo's fusions as Home describes them, from the demo plan itself (never numbers copied by hand)."""
    return " and ".join(fusion.describe() for fusion in PROFILES[profile].fusions)


def device_description() -> str:
    """Where the dashboard's models run: the GPU's name, or the CPU with its thread count."""
    import torch

    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    threads = torch.get_num_threads()
    return f"CPU, {threads} thread{'s' if threads != 1 else ''} per answer (the dashboard leaves the other cores to training)"


def run_status(workspace: Workspace) -> tuple[Run | None, int]:
    """The run executing now (if any) and how many runs wait in the queue."""
    store = RunStore(workspace.runs_db)
    store.mark_dead_runs_failed(pid_alive)  # a killed worker's run is not "running" for ever
    return store.active_run(), len(store.list_runs(status=QUEUED))


def checkpoint_names(workspace: Workspace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the complete adapters and fusions: cheap to poll, it changes when a run saves a checkpoint."""
    return tuple(workspace.list_adapters()), tuple(workspace.list_fusions())


def summarize_workspace(workspace: Workspace) -> WorkspaceSummary:
    """The base model, the device, and the adapters and fusions on disk with their dev scores."""
    adapter_rows, hashes, metas = [], {}, []
    for name in workspace.list_adapters():
        row, meta = _adapter_row(workspace, name)
        adapter_rows.append(row)
        hashes[name] = meta.get("content_hash") if meta is not None else None
        if meta is not None:
            metas.append(meta)
    fusion_rows = [_fusion_row(workspace, name, hashes) for name in workspace.list_fusions()]
    base_model = metas[0]["model_config"]["model_name_or_path"] if metas else ModelConfig().model_name_or_path
    return WorkspaceSummary(
        root=str(workspace.root),
        base_model=base_model,
        device=device_description(),
        adapters=tuple(adapter_rows),
        fusions=tuple(fusion_rows),
    )


# -- the demo ---------------------------------------------------------------------------------------------
def _comparable(run: AdapterRun | FusionRun) -> AdapterRun | FusionRun:
    """A run without its data directory: two tabs may point at different data but queue the same demo."""
    return dataclasses.replace(run, data_dir=None)


def _stored_run(run: Run) -> AdapterRun | FusionRun | None:
    try:
        return parse_run(run.kind, run.config)
    except ValueError:
        return None  # a run of another kind (or an unreadable one) is not part of the demo


def pending_demo_runs(store: RunStore, data_dir: str | None = None) -> list[Run]:
    """Queued or running runs of the classroom demo (recognised by kind, name and config)."""
    plan = [_comparable(run) for run in demo_runs(DEMO_PROFILE, data_dir)]
    pending = []
    for run in store.list_runs(status=(QUEUED, RUNNING)):
        spec = _stored_run(run)
        if spec is not None and _comparable(spec) in plan:
            pending.append(run)
    return pending


@contextmanager
def _workspace_lock(workspace: Workspace) -> Iterator[None]:
    """Exclusive lock shared by every process using ``workspace`` (released when the holder dies, too)."""
    fd = os.open(workspace.root / DEMO_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class DemoOutcome:
    run_ids: tuple[int, ...]
    worker_started: bool

    @property
    def message(self) -> str:
        worker = "started a worker" if self.worker_started else "the running worker will pick them up"
        return f"Queued {len(self.run_ids)} demo runs (ids {self.run_ids[0]}–{self.run_ids[-1]}); {worker}."


def demo_present(workspace: Workspace) -> list[str]:
    """The demo's fusions already trained in the workspace: preparing the demo again retrains them (minutes),
    which the Home page asks about first."""
    trained = set(workspace.list_fusions())
    return [run.name for run in demo_runs(DEMO_PROFILE) if isinstance(run, FusionRun) and run.name in trained]


def prepare_demo(workspace: Workspace, data_dir: str | None) -> DemoOutcome:
    """Queue the classroom demo and make sure a worker serves it; refuse if it is already queued or running."""
    problems = missing_data(DEMO_PROFILE, data_dir)
    lacking = missing_adapters(DEMO_PROFILE, set(workspace.list_adapters()))
    if lacking:
        problems.append(f"adapters {', '.join(lacking)} are neither in this workspace nor in the pretrained pack")
    if problems:
        raise DashboardError(
            "The demo cannot be prepared here, so nothing was queued: " + "; ".join(problems) + ". The pretrained "
            "pack's adapters and fusions are already in this workspace and need no data."
        )
    store = RunStore(workspace.ensure().runs_db)
    with _workspace_lock(workspace):
        pending = pending_demo_runs(store, data_dir)
        if pending:
            running = [r for r in pending if r.status == RUNNING]
            now = f"run {running[0].id} ({running[0].name}) is running" if running else "nothing has started yet"
            raise DashboardError(
                f"The demo is already being prepared: {len(pending)} of its runs are still queued or running "
                f"({now}). Follow them on the Runs page."
            )
        run_ids = enqueue_demo(store, DEMO_PROFILE, data_dir)
    return DemoOutcome(tuple(run_ids), ensure_worker(workspace))


# -- housekeeping (the teacher's delete) ------------------------------------------------------------------
def removable(workspace: Workspace) -> list[tuple[str, str]]:
    """``(kind, name)`` of the artifacts one may try to delete: fusions first, then adapters; never the pack's."""
    fusions = [(FUSION, n) for n in workspace.list_fusions() if not is_pack_artifact(workspace.fusion_dir(n))]
    adapters = [(ADAPTER, n) for n in workspace.list_adapters() if not is_pack_artifact(workspace.adapter_dir(n))]
    return fusions + adapters


def remove(workspace: Workspace, kind: str, name: str) -> str:
    """Delete one artifact and say so, or raise :class:`DashboardError` saying why it must stay."""
    try:
        removal = delete_artifact(workspace, kind, name)
    except RemovalRefused as err:
        raise DashboardError(f"Nothing was deleted: {err}.") from err
    return f"Deleted {removal.description}."


def unused_version_count(workspace: Workspace) -> tuple[int, float]:
    """How many earlier adapter and fusion versions nothing uses, and their size in MB."""
    versions = unused_versions(workspace)
    return len(versions), sum(v.size_bytes for v in versions) / 1e6


def prune(workspace: Workspace) -> str:
    """Remove the unused earlier versions and say how many, or raise :class:`DashboardError`."""
    try:
        removed = prune_versions(workspace)
    except RemovalRefused as err:
        raise DashboardError(f"Nothing was deleted: {err}.") from err
    return f"Deleted {len(removed)} unused earlier version{'s' if len(removed) != 1 else ''}."
