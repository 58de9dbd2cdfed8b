"""The background worker: executes queued runs one at a time, in its own process.

Training must not run inside the Streamlit server: a rerun, a closed tab or a server restart would kill it,
and two sessions training at once would fight over the CPU/GPU. So the dashboard only enqueues runs in the
:class:`~fusionlab.runstore.RunStore` and calls :func:`ensure_worker`, which spawns
``python -m fusionlab.worker`` detached from it. At most one worker serves a workspace and device at a time,
enforced by an exclusive ``flock`` on a lock file: the kernel drops it when the worker dies however it dies,
so a crash can never leave a stale lock behind, and any number of processes may call :func:`ensure_worker`
at once — the extra workers find the lock taken and exit quietly.

What a run does is up to its *executor*, found by run kind in a registry of ``"module:function"`` strings that
are imported only when a run of that kind starts (the training code pulls in torch; the worker itself does
not). Executors are called as ``func(run, ctx)`` and return ``(final_metrics, artifacts)``.
"""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusionlab.backends import RAY_LOCK_NAME, BackendSettings
from fusionlab.devices import AUTO, place_process
from fusionlab.processes import pid_alive
from fusionlab.run_context import RunCancelled, RunContext
from fusionlab.runspec import RUN_KINDS, spec_class
from fusionlab.runstore import QUEUED, Run, RunStore
from fusionlab.workspace import Workspace

EXECUTORS_ENV = "FUSIONLAB_EXECUTORS"
"""Extra or overriding executors: ``"kind=module:function,kind2=module:function"``."""

DEFAULT_IDLE_EXIT_SECONDS = 60.0
DEFAULT_NICENESS = 10
"""The worker trains at a lower CPU priority than the processes that answer people: a dashboard on the same
machine (the Playground's answers, thirty students' pages) gets the cores first and training takes the rest;
with the CPU otherwise idle the training is as fast as before (bench/classroom_load.py). ``--nice 0`` opts out."""
POLL_INTERVAL_S = 0.5

log = logging.getLogger(__name__)

Executor = Callable[[Run, "RunContext"], tuple[dict[str, Any], dict[str, Any]]]


# -- executors -----------------------------------------------------------------------------------------
def builtin_executors() -> dict[str, str]:
    """Run kind → executor, as each kind's spec class declares it (:data:`fusionlab.runspec.RUN_KINDS`)."""
    return {kind.value: spec_class(kind).executor for kind in RUN_KINDS}


def executor_specs() -> dict[str, str]:
    """The registry: run kind → ``"module:function"``, built-ins overlaid with ``$FUSIONLAB_EXECUTORS``."""
    specs = builtin_executors()
    for item in os.environ.get(EXECUTORS_ENV, "").split(","):
        if not item.strip():
            continue
        kind, sep, target = (part.strip() for part in item.partition("="))
        module_name, colon, func_name = target.partition(":")
        if not sep or not kind or not colon or not module_name or not func_name:
            raise ValueError(f"{EXECUTORS_ENV}: {item.strip()!r} is not of the form kind=module:function")
        specs[kind] = target
    return specs


def resolve_executor(kind: str) -> Executor:
    """Import and return the executor for a run kind; ``LookupError`` if the kind has none."""
    specs = executor_specs()
    if kind not in specs:
        raise LookupError(
            f"no executor for run kind {kind!r}; known kinds: {', '.join(sorted(specs))} "
            f"(add one with {EXECUTORS_ENV}='{kind}=module:function')"
        )
    module_name, _, func_name = specs[kind].partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, func_name)
    except AttributeError:
        raise LookupError(
            f"executor {specs[kind]!r} for run kind {kind!r}: {module_name} has no {func_name!r}"
        ) from None


def check_result(kind: str, result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``result`` if it keeps the executor contract ``(final_metrics, artifacts)``, else ``TypeError``."""
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(part, dict) for part in result)):
        raise TypeError(
            f"the executor for run kind {kind!r} returned {type(result).__name__}; "
            "expected a tuple (final_metrics: dict, artifacts: dict)"
        )
    return result


def describe_error(err: BaseException) -> str:
    """A readable first line (``ValueError: bad learning rate``), then the traceback for debugging."""
    trace = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return f"{type(err).__name__}: {err}\n\n{trace}"


def _record(update: Callable[..., None], *args: Any) -> None:
    """Apply a final status update; a failure to record one run's end must not take the worker down."""
    try:
        update(*args)
    except (ValueError, sqlite3.Error):
        log.exception("could not record the end of run %s", args[0])


def _execute(workspace: Workspace, store: RunStore, run: Run, device: str) -> None:
    log.info("run %d (%s %r) started on %s", run.id, run.kind, run.name, device)
    ctx = RunContext(workspace, store, run.id, device)
    try:
        final_metrics, artifacts = check_result(run.kind, resolve_executor(run.kind)(run, ctx))
    except RunCancelled:
        log.info("run %d cancelled", run.id)
        _record(store.mark_cancelled, run.id)
    except Exception as err:
        log.info("run %d failed: %s: %s", run.id, type(err).__name__, err)
        _record(store.fail, run.id, describe_error(err))
    except BaseException as err:  # SIGTERM (via SystemExit) or Ctrl-C: record why, then let the worker stop
        reason = f"worker process {os.getpid()} was stopped ({type(err).__name__}) while the run was running"
        _record(store.fail, run.id, reason)
        raise
    else:
        log.info("run %d finished", run.id)
        _record(store.finish, run.id, final_metrics, artifacts)


def run_inline(workspace: Workspace, kind: str, name: str, config: dict[str, Any], device: str = "inline") -> Run:
    """Execute one run in this process instead of a worker's, recorded in the run store like any other (so
    ``fusionlab runs`` and the Runs page show it); returns the run as it ended."""
    store = RunStore(workspace.runs_db)
    run = store.start(kind, name, config, os.getpid(), device)
    _execute(workspace, store, run, device)
    return store.get(run.id)


# -- the one-worker-per-device lock --------------------------------------------------------------------
def lock_path(workspace: Workspace, device: str) -> Path:
    """The lock file of the worker serving ``device`` (e.g. ``worker-cuda_0.lock``); it holds its pid."""
    return workspace.root / f"worker-{_file_safe(device)}.lock"


def _file_safe(device: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", device)


def try_lock(path: Path, patience: float) -> int | None:
    """An fd holding the exclusive lock on ``path``, or ``None`` if another process kept it ``patience`` s.

    flock cannot be queried without taking it, so :func:`worker_running` takes the lock for an instant; the
    patience keeps such a probe from being mistaken for a worker (a real worker holds the lock for its life).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.02)


def worker_running(workspace: Workspace, device: str = AUTO) -> bool:
    """Whether a worker currently serves ``device`` in this workspace."""
    fd = try_lock(lock_path(workspace, device), patience=0.1)
    if fd is None:
        return True
    os.close(fd)
    return False


def dispatcher_running(workspace: Workspace) -> bool:
    """Whether a Ray dispatcher serves this workspace's queue (``fusionlab worker --backend ray``); a workspace
    that never had one gets no lock file from asking."""
    return lock_path(workspace, RAY_LOCK_NAME).exists() and worker_running(workspace, RAY_LOCK_NAME)


def worker_pid(workspace: Workspace, device: str = AUTO) -> int | None:
    """The pid of the worker serving ``device`` (to show it, or stop it), or ``None`` if there is none."""
    path = lock_path(workspace, device)
    deadline = time.monotonic() + 1.0
    while worker_running(workspace, device):
        text = path.read_text(encoding="utf-8").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} is locked by a worker but records no pid: {text!r}")
        time.sleep(0.01)  # the worker has just taken the lock and not yet written its pid
    return None


# -- the worker loop -----------------------------------------------------------------------------------
def run_worker(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    device: str = AUTO,
    once: bool = False,
    idle_exit_seconds: float = DEFAULT_IDLE_EXIT_SECONDS,
) -> int | None:
    """Serve the queue: claim the oldest queued run, execute it, repeat.

    Returns ``None`` at once if another worker already serves this workspace and device (not an error: the
    queue is being served). Otherwise first fails the runs whose worker died, then executes runs until the
    queue has been empty for ``idle_exit_seconds`` (or after one run with ``once=True``), and returns how many
    runs it executed.
    """
    if idle_exit_seconds < 0:
        raise ValueError(f"idle_exit_seconds must be >= 0, got {idle_exit_seconds!r}")
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.ensure()
    store = RunStore(ws.runs_db)
    path = lock_path(ws, device)
    executed = 0
    first = True
    while True:
        fd = try_lock(path, patience=1.0)
        if fd is None:
            if first:
                log.info("another worker already serves %s in %s (see %s); exiting", device, ws.root, path)
                return None
            return executed  # another worker took over after we let go of the lock
        first = False
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            for run_id in store.mark_dead_runs_failed(pid_alive):
                log.warning("run %d was left running by a dead worker; marked failed", run_id)
            for leftover in ws.remove_abandoned():
                log.warning("removed %s, left half-written by a process that died", leftover)
            executed += _serve(ws, store, device, once, idle_exit_seconds)
        finally:
            os.close(fd)
        # A run enqueued just before we let go saw the lock held, so nobody started a worker for it: serve it.
        if once or not store.list_runs(status=QUEUED, limit=1):
            return executed


def _serve(ws: Workspace, store: RunStore, device: str, once: bool, idle_exit_seconds: float) -> int:
    executed = 0
    idle_since = time.monotonic()
    while True:
        run = store.claim_next(os.getpid(), device)
        if run is None:
            idle = time.monotonic() - idle_since
            if once or idle >= idle_exit_seconds:
                return executed
            time.sleep(min(POLL_INTERVAL_S, idle_exit_seconds - idle))
            continue
        _execute(ws, store, run, device)
        executed += 1
        if once:
            return executed
        idle_since = time.monotonic()


# -- spawning ------------------------------------------------------------------------------------------
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def ensure_worker(
    workspace: Workspace | str | os.PathLike[str] | None = None,
    device: str = AUTO,
    idle_exit_seconds: float = DEFAULT_IDLE_EXIT_SECONDS,
    backend: BackendSettings | None = None,
) -> bool:
    """Start a detached worker for ``device`` unless one is running; return whether one was started.

    Call it after every enqueue. Two callers racing may both start one; the lock lets only one serve.
    The worker's output goes to ``logs/worker-<device>.log`` in the workspace.

    ``backend`` (default: from ``$FUSIONLAB_BACKEND`` and friends, the local backend when unset) may name the
    Ray backend: then the process started is the workspace's one dispatcher (``logs/worker-ray.log``), and no
    local worker is started beside a dispatcher that serves the queue already.
    """
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    ws.ensure()
    backend = BackendSettings.from_environment() if backend is None else backend
    if backend.is_ray:
        device = RAY_LOCK_NAME
    if worker_running(ws, device) or dispatcher_running(ws):
        return False
    env = dict(os.environ)
    if _PACKAGE_PARENT.name not in ("site-packages", "dist-packages"):
        # A source checkout: let the child import this very fusionlab whatever its working directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PACKAGE_PARENT), env.get("PYTHONPATH")]))
    placement = [] if backend.is_ray else ["--device", device]  # a dispatcher places runs on the cluster
    command = [
        sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(ws.root), *placement,
        "--idle-exit", str(idle_exit_seconds), *backend.argv(),
    ]  # fmt: skip
    with open(ws.logs_dir / f"worker-{_file_safe(device)}.log", "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    # Reap the worker when it exits, so a long-lived server does not collect zombies (which also look alive).
    threading.Thread(target=process.wait, name=f"reap-worker-{process.pid}", daemon=True).start()
    log.info("started worker pid %d for %s in %s", process.pid, device, ws.root)
    return True


def lower_priority(niceness: int) -> None:
    """Add ``niceness`` to this process's (inherited by its children); 0 leaves it as it is."""
    if niceness < 0 or niceness > 19:
        raise ValueError(f"niceness must be between 0 and 19, got {niceness}")
    if niceness:
        os.nice(niceness)


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(
    home: str | os.PathLike | None,
    device: str = AUTO,
    once: bool = False,
    idle_exit_seconds: float = DEFAULT_IDLE_EXIT_SECONDS,
    niceness: int = DEFAULT_NICENESS,
) -> int | None:
    """Be the worker process of ``fusionlab worker``: lower the priority, log, place the device, serve the queue.

    Returns how many runs were executed, or ``None`` if another worker already serves this workspace and device.
    Its options are parsed by the command line alone (:mod:`fusionlab.cli`), which :func:`ensure_worker` spawns.
    """
    lower_priority(niceness)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [worker %(process)d] %(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)  # so a run killed by SIGTERM is recorded as stopped
    place_process(device)  # before any run imports torch: this process sees only its device
    executed = run_worker(home, device=device, once=once, idle_exit_seconds=idle_exit_seconds)
    if executed is not None:
        log.info("exiting after %d run(s)", executed)
    return executed
