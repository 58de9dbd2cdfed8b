"""The node side of a remote run: a temporary workspace, the run's own executor, reports through a channel.

:func:`execute_remote` is what the dispatcher submits as a Ray task. It lays the run's input files (resolved by
Ray from the object store) into a temporary workspace, calls the executor exactly as a local worker would —
``executor(run, ctx)`` with a :class:`~fusionlab.run_context.RunContext` — and returns a
:class:`~fusionlab.ray_backend.messages.RunOutcome` with the files of the artifacts it saved. The executor
cannot tell: its context's reports go to a :class:`ReportChannel` actor that lives on the dispatcher's node
instead of to the run store, and the dispatcher drains the channel into the store several times a second.

Ray is imported inside the functions, never at module level: ``import fusionlab.ray_backend.remote`` works
without Ray (the test of the default path relies on nothing here importing it).
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from fusionlab.ray_backend.messages import (
    CANCELLED,
    FAILED,
    FINISHED,
    METRICS,
    NODE_ROOT,
    PROGRESS,
    SNAPSHOT,
    STARTED,
    Files,
    Report,
    RunOutcome,
    RunPayload,
    pack,
    places,
    plain,
    rebase,
    unpack,
)
from fusionlab.run_context import RunCancelled, RunContext
from fusionlab.runstore import RUNNING, Run
from fusionlab.worker import check_result, describe_error
from fusionlab.workspace import Workspace

CANCEL_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


class ReportChannel:
    """The live line from running attempts to the dispatcher: reports in, cancels out.

    A plain class made a Ray actor by the dispatcher (``ray.remote(ReportChannel)``), placed on the dispatcher's
    own node so that losing a worker node loses no reports. Calls from one caller run in the order they were
    sent, so a run's reports arrive in order; :meth:`drain` hands the dispatcher everything since its last call.
    Reports and cancels are keyed by ``(run_id, attempt)``: a lost attempt's stragglers are told apart.
    """

    def __init__(self) -> None:
        self._reports: list[str] = []
        self._cancelled: set[tuple[int, int]] = set()

    def report(self, report_json: str) -> None:
        self._reports.append(report_json)

    def drain(self) -> list[str]:
        drained, self._reports = self._reports, []
        return drained

    def cancel(self, run_id: int, attempt: int) -> None:
        self._cancelled.add((run_id, attempt))

    def is_cancelled(self, run_id: int, attempt: int) -> bool:
        return (run_id, attempt) in self._cancelled

    def forget(self, run_id: int, attempt: int) -> None:
        self._cancelled.discard((run_id, attempt))

    def ping(self) -> bool:
        """A barrier: once it answers, every report this caller sent before it has been received."""
        return True


class ChannelReports:
    """A :class:`~fusionlab.run_context.RunReports` that sends to the channel instead of writing the store.

    Reports are sent without waiting (an executor's step is not slowed by the network); a cancel check asks the
    channel and waits for the answer, which :class:`RunContext` does at most twice a second.
    """

    def __init__(self, channel: Any, run_id: int, attempt: int) -> None:
        self.channel = channel
        self.run_id = run_id
        self.attempt = attempt

    def _send(self, **fields: Any) -> None:
        report = Report(run_id=self.run_id, attempt=self.attempt, **fields)
        self.channel.report.remote(report.to_json())

    def started(self, node: str) -> None:
        self._send(kind=STARTED, node=node)

    def log_metrics(self, run_id: int, step: int, values: dict[str, float]) -> None:
        self._send(kind=METRICS, step=int(step), values={str(k): float(v) for k, v in values.items()})

    def add_snapshot(self, run_id: int, step: int, payload: dict[str, Any]) -> None:
        self._send(kind=SNAPSHOT, step=int(step), payload=plain(payload))

    def set_progress(self, run_id: int, progress: float, message: str | None = None) -> None:
        self._send(kind=PROGRESS, progress=float(progress), message=message)

    def is_cancel_requested(self, run_id: int) -> bool:
        import ray

        try:
            return bool(ray.get(self.channel.is_cancelled.remote(self.run_id, self.attempt), timeout=CANCEL_TIMEOUT_S))
        except ray.exceptions.GetTimeoutError as err:
            raise ConnectionError(f"the dispatcher's channel did not answer in {CANCEL_TIMEOUT_S:g} s") from err

    def flush(self) -> None:
        import ray

        ray.get(self.channel.ping.remote(), timeout=30)


def artifact_roots(root: Path, artifacts: dict[str, Any]) -> list[str]:
    """The places whose files go back for the artifacts a run named: a checkpoint directory as it is; a file in a
    run's own directory, the whole directory (``comparisons/rte-s42/comparison.json`` brings back
    ``comparisons/rte-s42/``, where the comparison keeps its models too); a file directly in a collection
    (``curves/rte.json``), the file alone."""
    roots: list[str] = []
    for place in places(artifacts):
        path = root / place
        if not path.exists():
            continue
        parts = PurePosixPath(place).parts
        if path.is_file() and len(parts) >= 3:
            place = str(PurePosixPath(*parts[:-1]))
        if not any(place == r or place.startswith(r + "/") for r in roots):
            roots = [r for r in roots if not r.startswith(place + "/")] + [place]
    return roots


def execute_remote(payload_json: str, files: Files, channel: Any) -> tuple[str, Files]:
    """Run one attempt on this node; return its outcome (JSON) and the files of its artifacts.

    An executor's exception ends the attempt as failed, and a cancel as cancelled, both in the outcome; only the
    loss of the process or its node reaches the dispatcher as a Ray error (and makes it try again).
    """
    import ray

    payload = RunPayload.from_json(payload_json)
    node = ray.get_runtime_context().get_node_id()
    reports = ChannelReports(channel, payload.run_id, payload.attempt)
    reports.started(node)
    root = Path(tempfile.mkdtemp(prefix=f"fusionlab-run-{payload.run_id}-{payload.attempt}-"))
    try:
        workspace = Workspace(root).ensure()
        unpack(files, root)
        config = rebase(payload.config, NODE_ROOT, str(root))
        now = time.time()
        run = Run(
            id=payload.run_id, kind=payload.kind, name=payload.name, config=config, status=RUNNING,
            created_at=now, started_at=now, ended_at=None, worker_pid=None, device=payload.device, progress=0.0,
            message=None, error=None, final_metrics=None, artifacts=None, cancel_requested=False,
            node=node, attempts=payload.attempt, backend="ray",
        )  # fmt: skip
        ctx = RunContext(workspace, reports, payload.run_id, payload.device)
        outcome, artifact_files = _run_executor(payload, run, ctx, node, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    try:
        reports.flush()  # every report is in the channel before the dispatcher sees the outcome
    except Exception:  # the outcome matters more than the last report
        log.warning("run %d: the last reports may not have reached the dispatcher", payload.run_id)
    return outcome.to_json(), artifact_files


def _run_executor(payload: RunPayload, run: Run, ctx: RunContext, node: str, root: Path) -> tuple[RunOutcome, Files]:
    common = {"run_id": payload.run_id, "attempt": payload.attempt, "node": node}
    try:
        module_name, _, function_name = payload.executor.partition(":")
        executor = getattr(importlib.import_module(module_name), function_name)
        result = check_result(payload.kind, executor(run, ctx))
        final_metrics, artifacts = (rebase(plain(part), str(root), NODE_ROOT) for part in result)
    except RunCancelled:
        return RunOutcome(status=CANCELLED, **common), {}
    except Exception as err:  # any executor error fails the run, with its reason
        return RunOutcome(status=FAILED, error=describe_error(err), **common), {}
    published = artifact_roots(root, artifacts)
    files: Files = {}
    for place in published:
        files.update(pack(root, place))
    outcome = RunOutcome(
        status=FINISHED, final_metrics=final_metrics, artifacts=artifacts, published=published, **common
    )
    return outcome, files
