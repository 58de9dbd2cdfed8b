"""A real dashboard for the benches: ``streamlit run app.py`` over a fresh workspace holding the pretrained
pack, and a long training run in its worker when a bench wants the server measured "with a training run going".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from playground_latency import free_port  # noqa: E402


def start_server(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """Start the dashboard in classroom mode on a free local port; returns the process and its URL."""
    port = free_port()
    env = {**os.environ, "FUSIONLAB_HOME": str(home), "HF_HUB_OFFLINE": "1", "FUSIONLAB_MAX_QUEUED": "3"}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType",
               "none", "--", "--classroom"]  # fmt: skip
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return server, url
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start; see {log}") from None
            time.sleep(0.3)


@contextmanager
def pack_dashboard() -> Iterator[tuple[object, subprocess.Popen, str]]:
    """``(workspace, server, url)``: the dashboard over a fresh pack workspace; server and worker stopped after."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fusionlab.pack import PACK_DIR
    from fusionlab.pack.store import install_pack
    from fusionlab.processes import pid_alive
    from fusionlab.worker import worker_pid
    from fusionlab.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="fusionlab-bench-") as name:
        workspace = Workspace(Path(name) / "ws").ensure()
        install_pack(workspace, PACK_DIR)
        server, url = start_server(workspace.root, Path(name) / "streamlit.log")
        try:
            yield workspace, server, url
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            pid = worker_pid(workspace)
            if pid:
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 30  # it records the stopped run first: wait, or the rmtree races it
                while pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)


@contextmanager
def training_run_going(workspace) -> Iterator[int]:
    """A long SST-2 adapter run executing in the workspace's worker for the duration; cancelled after."""
    from fusionlab.runstore import RunStore
    from fusionlab.worker import ensure_worker

    store = RunStore(workspace.runs_db)
    name = "bench-background"  # the pack's sst2 is read-only: a run under its name would be refused at once
    long_run = {"task": "sst2", "name": name, "training_config": {"max_steps": 100000, "max_train_samples": 20000}}
    run_id = store.enqueue("train_adapter", name, long_run)
    ensure_worker(workspace)
    deadline = time.monotonic() + 120
    while store.get(run_id).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.5)
    _check_training(store, run_id, "at the start")
    try:
        yield run_id
    finally:
        _check_training(store, run_id, "at the end")  # a phase "with training" that had none would be a lie
        store.request_cancel(run_id)


def _check_training(store, run_id: int, when: str) -> None:
    run = store.get(run_id)
    if run.status != "running":
        raise RuntimeError(f"the background training run was {run.status} {when} of the phase: {run.error or ''}")
