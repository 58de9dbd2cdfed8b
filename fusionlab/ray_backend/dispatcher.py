"""The Ray backend's dispatcher: the workspace's queue served by a Ray cluster, the run store kept at home.

``fusionlab worker --backend ray`` runs :func:`serve_ray` on the workspace's machine. It is the one process
that touches the workspace: it claims queued runs in queue order (as many at once as the cluster has room for,
each needing ``--cpus-per-run``/``--gpus-per-run``), sends each to the cluster as a Ray task
(:func:`fusionlab.ray_backend.remote.execute_remote`) with its inputs in the object store, writes the live
reports the task sends through a :class:`~fusionlab.ray_backend.remote.ReportChannel` into the run store
(several times a second, so the Train page and ``fusionlab runs show`` follow it as they follow a local run),
forwards cancels, and publishes the artifacts that come back. Why each fault ends as it does:

* a node (or the task's process) lost under a run: nothing was published, so the run is put back in its
  place in the queue and started again elsewhere, its attempts counted, until ``max_attempts``; then it fails
  with the reason. Only the dispatcher publishes, once, so there is never a second set of artifacts;
* the dispatcher killed: its tasks die with it (Ray ties a task to the process that submitted it) and its
  runs are left "running"; the next dispatcher, or anyone who notices the dead process, queues them again
  (:meth:`fusionlab.runstore.RunStore.mark_dead_runs_failed`), so none is lost or run twice to the end;
* the cluster unreachable: :class:`ClusterUnreachable` before any run is claimed, so every run stays queued;
* a cancel: the task's context sees it at its next check (the executor stops as it would locally); one that
  does not stop within :data:`CANCEL_GRACE_S` is killed, which frees its CPUs/GPUs.

Ray is imported inside :meth:`Dispatcher.connect` only: fusionlab works, and this module imports, without it.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fusionlab.backends import RAY_LOCK_NAME, BackendSettings
from fusionlab.ray_backend.files import gather_inputs, publish, waits_for
from fusionlab.ray_backend.messages import (
    CANCELLED,
    FAILED,
    METRICS,
    NODE_ROOT,
    PROGRESS,
    SNAPSHOT,
    STARTED,
    Report,
    RunOutcome,
    RunPayload,
    WireError,
    rebase,
)
from fusionlab.ray_backend.remote import ReportChannel, execute_remote
from fusionlab.runstore import QUEUED, RUNNING, Run, RunStore
from fusionlab.worker import DEFAULT_IDLE_EXIT_SECONDS, describe_error, executor_specs, lock_path, try_lock
from fusionlab.workspace import Workspace

POLL_INTERVAL_S = 0.2
"""How often reports are drained into the store and finished tasks collected (live metrics lag at most this
plus the store's write)."""
CANCEL_CHECK_S = 0.5
CANCEL_GRACE_S = 5.0
"""A cancelled run that has not stopped by itself after this long is killed (the issue allows 10 s in all)."""
PROBE_TIMEOUT_S = 3.0
NAMESPACE = "fusionlab"
RAY_INSTALL_HINT = 'pip install "fusionlab[ray]"'

log = logging.getLogger(__name__)


class ClusterUnreachable(RuntimeError):
    """The Ray cluster could not be reached (or Ray is not installed); no run was claimed."""


@dataclass
class _Attempt:
    """One run on the cluster: its row as claimed, its task, and where its cancel stands."""

    run: Run
    ref: Any
    cancel_sent: float | None = None
    killed: bool = False

    @property
    def attempt(self) -> int:
        return self.run.attempts


def _probe(address: str) -> None:
    """Fail fast and plainly when nothing listens at a ``host:port`` or ``ray://host:port`` address (Ray itself
    may wait a long time before it gives up on an address)."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    if not parts.hostname or parts.port is None:
        raise ClusterUnreachable(f"the Ray address {address!r} is not auto, local, ray://host:port or host:port")
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as err:
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {address}: {err}") from err


def connect(address: str) -> bool:
    """Connect this process to the cluster at ``address`` (``local``: start Ray here); returns whether this
    call did (``False``: it was connected already, e.g. by a test). :class:`ClusterUnreachable` otherwise."""
    try:
        import ray
    except ImportError as err:
        raise ClusterUnreachable(f"the Ray backend needs Ray, which is not installed: {RAY_INSTALL_HINT}") from err
    if ray.is_initialized():
        return False
    _probe(address)
    try:
        if address == "local":
            ray.init(address="local", namespace=NAMESPACE, include_dashboard=False)  # a new one, never a neighbour's
        else:
            ray.init(address=address, namespace=NAMESPACE)
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, ValueError, …
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {address}: {err}") from err
    return True


class Dispatcher:
    """Serves one workspace's queue on a connected Ray cluster (see the module docstring); one ``step`` at a time,
    so that tests and the bench can drive it in their own loop."""

    def __init__(self, workspace: Workspace, settings: BackendSettings | None = None) -> None:
        self.workspace = workspace
        self.store = RunStore(workspace.runs_db)
        self.settings = settings or BackendSettings(backend="ray")
        self.inflight: dict[int, _Attempt] = {}
        self.ended = 0
        self._channel: Any = None
        self._task: Any = None
        self._cancels_checked = float("-inf")
        self.cpus = float(self.settings.cpus_per_run)
        self.gpus = 0.0

    # -- setting up ----------------------------------------------------------------------------------
    def start(self) -> Dispatcher:
        """On a connected cluster: the channel on this node, what a run needs, and the runs a dispatcher
        before this one left behind queued again."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        self._channel = (
            ray.remote(ReportChannel)
            .options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False))
            .remote()
        )
        self._task = ray.remote(execute_remote)
        gpus = self.settings.gpus_per_run
        self.gpus = float(gpus) if gpus is not None else (1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0)
        if self.cpus <= 0 and self.gpus <= 0:
            raise ValueError("a run must need some CPUs or GPUs (--cpus-per-run, --gpus-per-run)")
        self.reconcile()
        return self

    @property
    def device_label(self) -> str:
        """What a run's ``device`` reads while the cluster runs it."""
        return "ray:cuda" if self.gpus > 0 else "ray:cpu"

    def reconcile(self) -> list[int]:
        """Queue again the runs left "running" by a dispatcher that is gone (this one holds the workspace's
        dispatcher lock, so no other serves it); returns their ids."""
        requeued = []
        for run in self.store.list_runs(status=RUNNING):
            if run.backend != "ray" or run.id in self.inflight or run.worker_pid == os.getpid():
                continue
            if run.cancel_requested:
                self._safely(self.store.mark_cancelled, run.id)
            else:
                self._safely(self.store.requeue, run.id, f"queued again: dispatcher {run.worker_pid} stopped")
                requeued.append(run.id)
        return requeued

    def capacity(self) -> int:
        """How many runs fit on the cluster's live nodes at once (each node counted on its own)."""
        import ray

        total = 0
        for node in ray.nodes():
            if not node.get("Alive"):
                continue
            resources = node.get("Resources", {})
            fits = [resources.get("CPU", 0.0) / self.cpus if self.cpus > 0 else math.inf]
            fits.append(resources.get("GPU", 0.0) / self.gpus if self.gpus > 0 else math.inf)
            total += int(min(fits) + 1e-9)
        return total

    # -- one turn --------------------------------------------------------------------------------------
    def step(self) -> None:
        """Drain reports into the store, forward cancels, record what ended, start what fits."""
        self.drain()
        self._forward_cancels()
        self._collect()
        self._submit()

    def busy(self) -> bool:
        return bool(self.inflight) or bool(self.store.list_runs(status=QUEUED, limit=1))

    def serve(self, idle_exit_seconds: float = DEFAULT_IDLE_EXIT_SECONDS, once: bool = False) -> int:
        """Step until the queue has been empty (and nothing in flight) for ``idle_exit_seconds`` (or, with
        ``once``, until one run has ended); returns how many runs ended here."""
        idle_since = time.monotonic()
        while True:
            self.step()
            if once and self.ended:
                return self.ended
            if self.busy():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= idle_exit_seconds:
                return self.ended
            time.sleep(POLL_INTERVAL_S)

    def close(self, reason: str = "the dispatcher stopped") -> None:
        """Stop: the runs still on the cluster are killed and put back in the queue (nothing of theirs was
        published), for the next dispatcher."""
        if not self.inflight:
            return
        import ray

        for attempt in list(self.inflight.values()):
            try:
                ray.cancel(attempt.ref, force=True)
            except Exception:  # stopping anyway
                log.exception("could not kill the task of run %d", attempt.run.id)
            self._safely(self.store.requeue, attempt.run.id, f"queued again: {reason}")
        self.inflight.clear()

    # -- the parts of a turn -----------------------------------------------------------------------------
    def drain(self) -> int:
        """Write the reports the channel holds into the run store; returns how many were written."""
        import ray

        written = 0
        for text in ray.get(self._channel.drain.remote()):
            try:
                report = Report.from_json(text)
            except WireError as err:
                log.warning("dropped a report: %s", err)
                continue
            attempt = self.inflight.get(report.run_id)
            if attempt is None or attempt.attempt != report.attempt:
                continue  # a lost attempt's straggler
            run_id = report.run_id
            if report.kind == STARTED:
                self._safely(self.store.set_node, run_id, report.node)
            elif report.kind == METRICS:
                self._safely(self.store.log_metrics, run_id, report.step, report.values)
            elif report.kind == SNAPSHOT:
                self._safely(self.store.add_snapshot, run_id, report.step, report.payload)
            elif report.kind == PROGRESS:
                self._safely(self.store.set_progress, run_id, report.progress, report.message)
            written += 1
        return written

    def _forward_cancels(self) -> None:
        import ray

        now = time.monotonic()
        if now - self._cancels_checked < CANCEL_CHECK_S:
            return
        self._cancels_checked = now
        for attempt in self.inflight.values():
            if attempt.cancel_sent is None:
                if self.store.is_cancel_requested(attempt.run.id):
                    self._channel.cancel.remote(attempt.run.id, attempt.attempt)
                    attempt.cancel_sent = now
            elif not attempt.killed and now - attempt.cancel_sent >= CANCEL_GRACE_S:
                log.info("run %d did not stop within %.0f s of its cancel; killing it", attempt.run.id, CANCEL_GRACE_S)
                ray.cancel(attempt.ref, force=True)
                attempt.killed = True

    def _collect(self) -> None:
        import ray

        if not self.inflight:
            return
        by_ref = {attempt.ref: attempt for attempt in self.inflight.values()}
        ready, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        if not ready:
            return
        self.drain()  # a task sends all its reports before it returns: record them before its end
        for ref in ready:
            attempt = by_ref[ref]
            del self.inflight[attempt.run.id]
            self._channel.forget.remote(attempt.run.id, attempt.attempt)
            self._end(attempt, ref)
            self.ended += 1

    def _end(self, attempt: _Attempt, ref: Any) -> None:
        import ray

        run = attempt.run
        try:
            outcome_json, files = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            self._safely(self.store.mark_cancelled, run.id)
            return
        except ray.exceptions.RayTaskError as err:  # the wrapper itself failed on the node (e.g. another version)
            self._safely(self.store.fail, run.id, f"{type(err.cause).__name__}: {err.cause}\n\n{err}")
            return
        except ray.exceptions.RayError as err:  # the process or node is gone: nothing was published
            self._lost(run, err)
            return
        try:
            outcome = RunOutcome.from_json(outcome_json)
            if outcome.status == CANCELLED:
                self._safely(self.store.mark_cancelled, run.id)
            elif outcome.status == FAILED:
                self._safely(self.store.fail, run.id, outcome.error or "failed on the cluster")
            else:
                publish(self.workspace, outcome.published, files)
                home = str(self.workspace.root)
                self.store.finish(
                    run.id, rebase(outcome.final_metrics, NODE_ROOT, home), rebase(outcome.artifacts, NODE_ROOT, home)
                )
                log.info("run %d finished on node %s (attempt %d)", run.id, outcome.node, run.attempts)
        except Exception as err:  # a bad outcome or a failed publish fails this run, not the loop
            self._safely(self.store.fail, run.id, f"could not record the outcome: {describe_error(err)}")

    def _lost(self, run: Run, err: BaseException) -> None:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}"
        if self.store.is_cancel_requested(run.id):
            self._safely(self.store.mark_cancelled, run.id)
        elif run.attempts < self.settings.max_attempts:
            log.warning("run %d lost on the cluster (attempt %d): %s; queued again", run.id, run.attempts, reason)
            self._safely(self.store.requeue, run.id, f"attempt {run.attempts} was lost ({reason}); queued again")
        else:
            self._safely(
                self.store.fail, run.id, f"lost on the cluster {run.attempts} times, the most allowed; last: {reason}"
            )

    def _submit(self) -> None:
        while len(self.inflight) < self.capacity():
            head = self.store.next_queued()
            running = [(a.run.kind, a.run.name) for a in self.inflight.values()]
            if head is None or waits_for(head.config, head.kind, head.name, running):
                return  # in queue order: the head waits for what it reads (or writes) to be published first
            run = self.store.claim_next(os.getpid(), self.device_label, backend="ray")
            if run is None:
                return
            try:
                self.inflight[run.id] = _Attempt(run, self._send(run))
            except Exception as err:  # a run that cannot be sent fails, with the reason
                self._safely(self.store.fail, run.id, describe_error(err))

    def _send(self, run: Run) -> Any:
        import ray

        specs = executor_specs()
        if run.kind not in specs:
            raise LookupError(f"no executor for run kind {run.kind!r}; known kinds: {', '.join(sorted(specs))}")
        config, files = gather_inputs(self.workspace, run.kind, run.config)
        payload = RunPayload(
            run_id=run.id,
            attempt=run.attempts,
            kind=run.kind,
            name=run.name,
            config=config,
            executor=specs[run.kind],
            device="auto" if self.gpus > 0 else "cpu",
            inputs=sorted(files),
        )
        log.info("run %d (%s %r) sent to the cluster, attempt %d", run.id, run.kind, run.name, run.attempts)
        return self._task.options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0, name=f"fusionlab-run-{run.id}"
        ).remote(payload.to_json(), ray.put(files), self._channel)

    @staticmethod
    def _safely(update: Any, *args: Any) -> None:
        """A store update that must not stop the dispatcher (e.g. the run was ended by someone else)."""
        try:
            update(*args)
        except (ValueError, KeyError) as err:
            log.warning("run %s: %s", args[0] if args else "?", err)


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve_ray(
    home: str | os.PathLike | None,
    settings: BackendSettings,
    once: bool = False,
    idle_exit_seconds: float = DEFAULT_IDLE_EXIT_SECONDS,
) -> int | None:
    """Be ``fusionlab worker --backend ray``: hold the workspace's dispatcher lock, connect, serve, let go.

    Returns how many runs ended, or ``None`` if another dispatcher already serves this workspace. Raises
    :class:`ClusterUnreachable` (every run still queued, each saying why it waits) if the cluster cannot be
    reached.
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    workspace = Workspace(home).ensure()
    store = RunStore(workspace.runs_db)
    fd = try_lock(lock_path(workspace, RAY_LOCK_NAME), patience=1.0)
    if fd is None:
        return None
    dispatcher: Dispatcher | None = None
    connected = False
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        for leftover in workspace.remove_abandoned():
            log.warning("removed %s, left half-written by a process that died", leftover)
        try:
            connected = connect(settings.ray_address)
        except ClusterUnreachable as err:
            for run in store.list_runs(status=QUEUED):
                store.set_progress(run.id, 0.0, f"waiting: {err}")
            raise
        dispatcher = Dispatcher(workspace, settings).start()
        return dispatcher.serve(idle_exit_seconds, once)
    finally:
        if dispatcher is not None:
            dispatcher.close()
        if connected:
            import ray

            ray.shutdown()
        os.close(fd)
