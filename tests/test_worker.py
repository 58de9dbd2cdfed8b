"""The worker: real subprocesses executing fake executors against a real SQLite run store.

Nothing sleeps for a fixed time: every wait polls the store or the process with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusionlab.runstore import CANCELLED, FAILED, FINISHED, RUNNING, RunStore
from fusionlab.worker import (
    DEFAULT_NICENESS,
    builtin_executors,
    ensure_worker,
    executor_specs,
    pid_alive,
    run_worker,
    worker_pid,
    worker_running,
)
from fusionlab.workspace import Workspace

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
EXECUTORS = ",".join(
    f"{kind}=fake_executors:{func}"
    for kind, func in [
        ("count", "count_steps"),
        ("checkpoint", "slow_checkpoint"),
        ("explode", "explode"),
        ("bad_result", "bad_result"),
        ("placement", "report_placement"),
    ]
)
DEADLINE_S = 30.0  # generous for a loaded CI machine; a passing run takes a fraction of it


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A fresh workspace; worker subprocesses (inheriting this environment) find fusionlab and the fakes."""
    monkeypatch.setenv("FUSIONLAB_EXECUTORS", EXECUTORS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    monkeypatch.syspath_prepend(str(TESTS))
    workspace = Workspace(tmp_path / "ws").ensure()
    yield workspace
    pid = worker_pid(workspace)
    if pid is not None:  # a worker that ensure_worker left idling
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def store(ws: Workspace) -> RunStore:
    return RunStore(ws.runs_db)


@pytest.fixture
def start_worker(ws: Workspace) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -m fusionlab.worker`` on the workspace; any still running is killed at the end."""
    started: list[subprocess.Popen] = []

    def start(idle_exit_seconds: float = 0.0) -> subprocess.Popen:
        command = [sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(ws.root)]
        command += ["--idle-exit", str(idle_exit_seconds)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def finish(process: subprocess.Popen) -> str:
    """Wait for a worker to exit on its own and return its output."""
    output, _ = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, output
    return output


def test_worker_executes_queued_runs_in_order(ws: Workspace, store: RunStore, start_worker) -> None:
    first = store.enqueue("count", "first", {"steps": 4, "snapshot_every": 2})
    second = store.enqueue("count", "second", {"steps": 2})
    worker = start_worker()
    finish(worker)

    runs = [store.get(first), store.get(second)]
    assert [r.status for r in runs] == [FINISHED, FINISHED]
    assert runs[0].ended_at <= runs[1].started_at
    assert all(r.worker_pid == worker.pid and r.device == "auto" for r in runs)
    assert runs[0].final_metrics == {"loss": 0.25, "steps": 4}
    assert runs[0].artifacts == {"device": "auto"}
    assert (runs[0].progress, runs[0].message) == (1.0, "step 4/4")

    metrics = store.metrics(first)
    loss = metrics[metrics["name"] == "loss"]
    assert loss["step"].tolist() == [1, 2, 3, 4]
    assert loss["value"].tolist() == [1.0, 0.5, 1 / 3, 0.25]
    assert [s.step for s in store.snapshots(first)] == [2, 4]


@pytest.mark.parametrize(
    ("kind", "first_line"),
    [
        ("explode", "ValueError: boom: learning rate -1 is negative"),
        ("bad_result", "TypeError: the executor for run kind 'bad_result' returned str; expected a tuple"),
        ("no_such_kind", "LookupError: no executor for run kind 'no_such_kind'"),
    ],
)
def test_executor_errors_fail_the_run_with_their_message(
    ws: Workspace, store: RunStore, kind: str, first_line: str
) -> None:
    run_id = store.enqueue(kind, "bad", {"learning_rate": -1})
    after = store.enqueue("count", "after", {"steps": 1})
    assert run_worker(ws, idle_exit_seconds=0) == 2  # in process: the worker survives the failure
    run = store.get(run_id)
    assert run.status == FAILED
    assert run.error.splitlines()[0].startswith(first_line)
    assert "Traceback (most recent call last)" in run.error
    assert store.get(after).status == FINISHED


def test_once_executes_a_single_run(ws: Workspace, store: RunStore) -> None:
    first = store.enqueue("count", "a", {"steps": 1})
    second = store.enqueue("count", "b", {"steps": 1})
    assert run_worker(ws, once=True) == 1
    assert (store.get(first).status, store.get(second).status) == (FINISHED, "queued")


def test_cancel_a_running_run_stops_it_within_seconds(ws: Workspace, store: RunStore, start_worker) -> None:
    long_run = store.enqueue("count", "long", {"steps": 100_000, "delay": 0.01})
    worker = start_worker(idle_exit_seconds=DEADLINE_S)
    wait_until(lambda: len(store.metrics(long_run)) > 0, "the run to log its first step")

    requested = time.monotonic()
    assert store.request_cancel(long_run) == RUNNING
    wait_until(lambda: store.get(long_run).status == CANCELLED, "the run to be cancelled", timeout=10)
    assert time.monotonic() - requested < 5
    assert store.get(long_run).error is None

    # The worker carries on with the queue afterwards.
    next_run = store.enqueue("count", "next", {"steps": 2})
    wait_until(lambda: store.get(next_run).status == FINISHED, "the next run to finish")
    assert worker.poll() is None


def test_cancel_a_queued_run_before_it_starts(ws: Workspace, store: RunStore, start_worker) -> None:
    running = store.enqueue("count", "running", {"steps": 100_000, "delay": 0.01})
    queued = store.enqueue("count", "queued", {"steps": 1})
    worker = start_worker()
    wait_until(lambda: store.get(running).status == RUNNING, "the first run to start")
    assert store.request_cancel(queued) == CANCELLED
    store.request_cancel(running)
    finish(worker)  # with the queue empty, it exits
    assert store.get(running).status == CANCELLED
    run = store.get(queued)
    assert (run.status, run.started_at, run.worker_pid) == (CANCELLED, None, None)


def test_killed_worker_fails_its_run_and_publishes_no_checkpoint(ws: Workspace, store: RunStore, start_worker) -> None:
    run_id = store.enqueue("checkpoint", "sst2", {"hold_seconds": DEADLINE_S})
    worker = start_worker(idle_exit_seconds=DEADLINE_S)
    wait_until(lambda: store.get(run_id).message == "writing checkpoint", "the checkpoint write to start")

    worker.send_signal(signal.SIGKILL)
    # Not reaped on purpose: the dead worker stays a zombie, which must not count as alive.
    wait_until(lambda: not pid_alive(worker.pid), "the killed worker to die")
    assert store.get(run_id).status == RUNNING  # nobody could record anything yet
    assert not ws.adapter_dir("sst2").exists()
    assert ws.list_adapters() == []
    leftovers = [p.name for p in ws.adapters_dir.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".tmp-{worker.pid}-sst2-")

    finish(start_worker())  # a new worker cleans up after the dead one: its run, and its half-written directory
    assert list(ws.adapters_dir.iterdir()) == []
    run = store.get(run_id)
    assert run.status == FAILED
    assert run.error == f"worker process {worker.pid} died while the run was running (killed or crashed)"


def test_only_one_worker_per_workspace_and_device(ws: Workspace, store: RunStore, start_worker) -> None:
    first = start_worker(idle_exit_seconds=DEADLINE_S)
    wait_until(lambda: worker_pid(ws) == first.pid, "the first worker to take the lock")
    # it trains at a lower CPU priority than the processes that answer people (a dashboard on the machine)
    assert os.getpriority(os.PRIO_PROCESS, first.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + DEFAULT_NICENESS)

    output = finish(start_worker())
    assert "another worker already serves auto" in output
    assert run_worker(ws) is None
    assert ensure_worker(ws) is False
    assert first.poll() is None

    run_id = store.enqueue("count", "served", {"steps": 1})
    wait_until(lambda: store.get(run_id).status == FINISHED, "the first worker to serve the run")
    assert store.get(run_id).worker_pid == first.pid

    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=DEADLINE_S)
    assert not worker_running(ws) and worker_pid(ws) is None


def test_ensure_worker_races_start_exactly_one_serving_worker(ws: Workspace, store: RunStore) -> None:
    run_ids = [store.enqueue("count", f"r{i}", {"steps": 2}) for i in range(3)]
    results: list[bool] = []
    callers = [threading.Thread(target=lambda: results.append(ensure_worker(ws, idle_exit_seconds=2))) for _ in "ab"]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert True in results

    wait_until(lambda: all(store.get(r).status == FINISHED for r in run_ids), "all runs to finish")
    assert len({store.get(r).worker_pid for r in run_ids}) == 1
    assert (ws.logs_dir / "worker-auto.log").exists()
    wait_until(lambda: not worker_running(ws), "the idle worker to exit")


def test_executor_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONLAB_EXECUTORS", " demo = my.module:demo , extra=pkg.mod:run,")
    specs = executor_specs()
    assert specs["demo"] == "my.module:demo" and specs["extra"] == "pkg.mod:run"
    assert specs["train_adapter"] == builtin_executors()["train_adapter"]
    monkeypatch.setenv("FUSIONLAB_EXECUTORS", "demo=no_colon")
    with pytest.raises(ValueError, match="not of the form kind=module:function"):
        executor_specs()


@pytest.mark.parametrize(("device", "visible"), [("cpu", ""), ("cuda:3", "3"), ("auto", "<unset>")])
def test_a_worker_places_its_process_on_its_device(ws: Workspace, store: RunStore, device: str, visible: str) -> None:
    """``--device`` is where the runs execute: the worker process sees that device alone (``cpu``: no GPU)."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    run_id = store.enqueue("placement", "where", {})
    command = [sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(ws.root), "--device", device, "--once"]
    output = subprocess.run(command, capture_output=True, text=True, env=env, timeout=DEADLINE_S, check=True)
    run = store.get(run_id)
    assert run.status == FINISHED, output.stdout + output.stderr
    assert run.artifacts == {"device": device, "visible": visible}


def test_a_bad_device_is_refused_before_anything_runs(ws: Workspace, store: RunStore) -> None:
    run_id = store.enqueue("placement", "where", {})
    command = [sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(ws.root), "--device", "gpu0", "--once"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S)
    assert output.returncode == 2 and "cuda:N" in output.stderr
    assert store.get(run_id).status == "queued"


def test_a_training_run_on_a_gpu_this_machine_lacks_fails_with_the_reason() -> None:
    from fusionlab.devices import require_device

    require_device("cpu")
    require_device("inline")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="serves cuda:0, but torch sees no GPU"):
        require_device("cuda")


def _run_of_a_killed_worker(store: RunStore, start_worker) -> int:
    """A run left "running" by a worker that was killed with SIGKILL (it could record nothing)."""
    run_id = store.enqueue("count", "long", {"steps": 10_000, "delay": 0.05})
    worker = start_worker(idle_exit_seconds=DEADLINE_S)
    wait_until(lambda: store.get(run_id).status == RUNNING, "the run to start")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=DEADLINE_S)
    assert store.get(run_id).status == RUNNING
    return run_id


def test_the_cli_follower_notices_a_killed_worker_within_seconds(ws: Workspace, store: RunStore, start_worker) -> None:
    from fusionlab import cli

    run_id = _run_of_a_killed_worker(store, start_worker)
    started = time.monotonic()
    assert cli._follow(store, [run_id]) == 1
    assert time.monotonic() - started < 5
    run = store.get(run_id)
    assert run.status == FAILED and "died while the run was running" in run.error


def test_the_dashboard_poll_notices_a_killed_worker(ws: Workspace, store: RunStore, start_worker) -> None:
    from fusionlab.dashboard.train_view import QueueView
    from fusionlab.dashboard.workspace_view import run_status

    run_id = _run_of_a_killed_worker(store, start_worker)
    assert run_status(ws) == (None, 0)  # the Home page's progress: nothing is running any more
    view = QueueView.load(store, ws)
    assert view.active is None and view.last_ended is not None and view.last_ended.id == run_id
    assert store.get(run_id).status == FAILED
