"""The Ray backend: its messages and files without Ray, the default path with Ray blocked, and the dispatcher on
a simulated cluster (``ray.cluster_utils.Cluster``: a head without CPUs and two one-CPU nodes).

The cluster tests (marker ``ray``) share one cluster and run fake executors (``tests/fake_executors.py``), so
that together they stay well under three minutes on a two-core machine. Nothing sleeps for a fixed time: each
wait polls the store with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusionlab.backends import BackendSettings
from fusionlab.pack.card import CARD_FILE
from fusionlab.ray_backend.files import PACK_CARD, gather_inputs, publish
from fusionlab.ray_backend.messages import (
    NODE_ROOT,
    WIRE_KEY,
    Report,
    RunOutcome,
    RunPayload,
    WireError,
    check_place,
    places,
    rebase,
)
from fusionlab.runspec import run_record
from fusionlab.runstore import CANCELLED, FINISHED, QUEUED, RUNNING, STORE_VERSION, RunStore
from fusionlab.workspace import CHECKPOINT_MARKER, TMP_PREFIX, Workspace

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
EXECUTORS = ",".join(
    f"{kind}=fake_executors:{func}"
    for kind, func in [
        ("count", "count_steps"),
        ("clock", "clock_steps"),
        ("checkpoint", "slow_checkpoint"),
        ("explode", "explode"),
        ("stubborn", "stubborn"),
    ]
)
DEADLINE_S = 60.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- without a cluster -----------------------------------------------------------------------------------
def test_messages_round_trip_and_refuse_what_they_cannot_read() -> None:
    payload = RunPayload(run_id=3, attempt=2, kind="count", name="n", config={"steps": 2}, executor="m:f")
    assert RunPayload.from_json(payload.to_json()) == payload
    report = Report(run_id=3, attempt=2, kind="metrics", step=4, values={"loss": 0.5})
    assert Report.from_json(report.to_json()) == report
    outcome = RunOutcome(run_id=3, attempt=2, status="finished", node="abc", published=["adapters/x"])
    assert RunOutcome.from_json(outcome.to_json()) == outcome

    other = json.loads(payload.to_json()) | {WIRE_KEY: 99}
    with pytest.raises(WireError, match="same fusionlab"):
        RunPayload.from_json(json.dumps(other))
    with pytest.raises(WireError, match="executor"):
        RunPayload.from_json(json.dumps(json.loads(payload.to_json()) | {"executor": "nocolon"}))
    with pytest.raises(WireError, match="values"):
        Report.from_json(json.dumps(json.loads(report.to_json()) | {"values": {"loss": "high"}}))
    with pytest.raises(WireError, match="error"):
        RunOutcome.from_json(json.dumps(json.loads(outcome.to_json()) | {"status": "failed"}))
    with pytest.raises(WireError, match="inside a workspace"):
        RunOutcome.from_json(json.dumps(json.loads(outcome.to_json()) | {"published": ["../../etc"]}))


def test_paths_cross_as_places_in_the_workspace() -> None:
    config = {"data_dir": "/home/u/ws/data", "nested": [{"p": "/home/u/ws"}], "other": "/home/u/wsx"}
    crossed = rebase(config, "/home/u/ws", NODE_ROOT)
    assert crossed == {"data_dir": f"{NODE_ROOT}/data", "nested": [{"p": NODE_ROOT}], "other": "/home/u/wsx"}
    assert places({"a": f"{NODE_ROOT}/adapters/x", "b": [f"{NODE_ROOT}/adapters/x", "cpu"]}) == ["adapters/x"]
    for bad in ("/abs", "a/../../b", "", "a\\b"):
        with pytest.raises(ValueError):
            check_place(bad)


def test_a_fusion_run_sends_its_adapters_task_data_and_user_file(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    for name in ("a", "b"):
        (ws.adapter_dir(name)).mkdir(parents=True)
        (ws.adapter_dir(name) / CHECKPOINT_MARKER).write_text("{}")
        (ws.adapter_dir(name) / "adapter.safetensors").write_bytes(name.encode())
    data = tmp_path / "data" / "rte"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"x": 1}\n')
    user_file = tmp_path / "mine.csv"
    user_file.write_text("text,label\nhi,1\n")
    config = {
        "target_task": "rte",
        "adapters": ["a", "b", "missing"],
        "data_dir": str(tmp_path / "data"),
        "custom_task": {"path": str(user_file), "text_columns": ["text"]},
    }
    sent, files = gather_inputs(ws, "train_fusion", config)
    assert sorted(files) == [
        "adapters/a/adapter.safetensors",
        f"adapters/a/{CHECKPOINT_MARKER}",
        "adapters/b/adapter.safetensors",
        f"adapters/b/{CHECKPOINT_MARKER}",
        "data/rte/train.jsonl",
        "inputs/mine.csv",
    ]
    assert sent["data_dir"] == f"{NODE_ROOT}/data" and sent["custom_task"]["path"] == f"{NODE_ROOT}/inputs/mine.csv"
    assert config["data_dir"] == str(tmp_path / "data")  # the stored config is left as it was


def test_artifacts_are_published_complete_or_not_at_all(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    files = {"fusions/f/fusionlab.json": b"{}", "fusions/f/sub/w.bin": b"w", "comparisons/c/comparison.json": b"[]"}
    publish(ws, ["fusions/f", "comparisons/c/comparison.json"], files)
    assert (ws.fusion_dir("f") / "sub" / "w.bin").read_bytes() == b"w"
    assert (ws.root / "comparisons" / "c" / "comparison.json").read_bytes() == b"[]"
    publish(ws, ["fusions/f"], {"fusions/f/fusionlab.json": b"{new}"})  # replaced whole
    assert sorted(p.name for p in ws.fusion_dir("f").iterdir()) == ["fusionlab.json"]
    assert not [p for p in ws.fusions_dir.iterdir() if p.name.startswith(TMP_PREFIX)]

    (ws.fusion_dir("f") / PACK_CARD).write_text("{}")  # the pack's own fusion: read-only
    with pytest.raises(ValueError, match="pretrained pack"):
        publish(ws, ["fusions/f"], {"fusions/f/fusionlab.json": b"{mine}"})
    assert (ws.fusion_dir("f") / "fusionlab.json").read_bytes() == b"{new}" and PACK_CARD == CARD_FILE


def test_what_comes_back_is_each_artifact_whole(tmp_path: Path) -> None:
    from fusionlab.ray_backend.remote import artifact_roots

    for place in ("fusions/f/w.bin", "comparisons/c/comparison.json", "comparisons/c/models/m.bin", "curves/x.json"):
        (tmp_path / place).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / place).write_bytes(b"")
    artifacts = {
        "checkpoint": f"{NODE_ROOT}/fusions/f",
        "comparison": f"{NODE_ROOT}/comparisons/c/comparison.json",
        "curve": f"{NODE_ROOT}/curves/x.json",
        "gone": f"{NODE_ROOT}/fusions/never-saved",
        "device": "cpu",
    }
    assert artifact_roots(tmp_path, artifacts) == ["fusions/f", "comparisons/c", "curves/x.json"]


def test_a_lost_attempt_is_queued_again_until_the_limit(tmp_path: Path) -> None:
    from fusionlab.ray_backend.dispatcher import Dispatcher

    ws = Workspace(tmp_path / "ws").ensure()
    dispatcher = Dispatcher(ws, BackendSettings(backend="ray", max_attempts=2))  # not started: no Ray needed
    store = dispatcher.store
    run_id = store.enqueue("count", "r", {})
    lost = ConnectionError("node 1 died\ndetails")
    dispatcher._lost(store.claim_next(1, "ray:cpu", backend="ray"), lost)
    assert store.get(run_id).status == QUEUED and "attempt 1 was lost (ConnectionError: node 1 died)" in str(
        store.get(run_id).message
    )
    dispatcher._lost(store.claim_next(1, "ray:cpu", backend="ray"), lost)
    failed = store.get(run_id)
    assert failed.status == "failed" and failed.attempts == 2 and "lost on the cluster 2 times" in str(failed.error)
    cancelled = store.enqueue("count", "c", {})
    claimed = store.claim_next(1, "ray:cpu", backend="ray")
    store.request_cancel(cancelled)
    dispatcher._lost(claimed, lost)
    assert store.get(cancelled).status == CANCELLED


def test_a_store_from_before_the_ray_backend_opens_with_node_and_attempts(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    run_id = store.enqueue("count", "old", {})
    with sqlite3.connect(path) as conn:  # back to version 2: the columns of version 3 did not exist
        conn.execute("PRAGMA user_version = 2")
        for column in ("node", "attempts", "backend"):
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    reopened = RunStore(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION == 3
    record = run_record(reopened.get(run_id))
    assert record["node"] is None and record["attempts"] == 0
    claimed = reopened.claim_next(1, "cpu")
    assert claimed is not None and claimed.attempts == 1 and claimed.backend is None


def test_a_dead_dispatchers_runs_are_queued_again_not_failed(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    ray_run, local_run = store.enqueue("count", "r", {}), store.enqueue("count", "l", {})
    store.claim_next(999_999, "ray:cpu", backend="ray")
    store.log_metrics(ray_run, 1, {"loss": 1.0})
    store.claim_next(999_999, "cpu")
    assert store.mark_dead_runs_failed(lambda pid: False) == [local_run]
    again = store.get(ray_run)
    assert again.status == QUEUED and again.attempts == 1 and "dispatcher" in (again.message or "")
    assert store.metrics(ray_run).empty  # the abandoned attempt's curve is gone; the next one starts afresh


def test_backend_settings_from_flags_environment_and_server() -> None:
    from fusionlab.dashboard.server_config import load_server_config

    env = {"FUSIONLAB_BACKEND": "ray", "FUSIONLAB_RAY_ADDRESS": "ray://head:10001", "FUSIONLAB_GPUS_PER_RUN": "0"}
    settings = BackendSettings.from_environment(env)
    assert settings.is_ray and settings.gpus_per_run == 0
    assert settings.argv()[:4] == ["--backend", "ray", "--ray-address", "ray://head:10001"]
    assert BackendSettings.from_json(settings.to_json()) == settings
    assert not BackendSettings.from_environment({}).is_ray
    with pytest.raises(ValueError, match="backend"):
        BackendSettings(backend="slurm")
    config = load_server_config(["--backend", "ray", "--cpus-per-run", "2"], environ=env)
    assert config.backend_settings() == BackendSettings("ray", "ray://head:10001", 2.0, 0.0)
    exported: dict[str, str] = {}
    config.backend_settings().export(exported)
    assert BackendSettings.from_environment(exported) == config.backend_settings()


BLOCK_RAY = """
import sys
class _NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("ray is blocked for this test")
sys.meta_path.insert(0, _NoRay())
"""


def test_the_default_path_works_without_ray(tmp_path: Path) -> None:
    """With ``import ray`` failing: fusionlab, its CLI and the Ray backend's modules import, a local worker runs
    a queued run, and asking for the Ray backend says what to install, leaving the run queued."""
    script = (
        BLOCK_RAY
        + f"""
import fusionlab, fusionlab.cli, fusionlab.ray_backend.dispatcher, fusionlab.ray_backend.remote
from fusionlab.runstore import RunStore
from fusionlab.worker import run_worker
from fusionlab.cli import main
store = RunStore({str(tmp_path / "ws" / "runs.sqlite")!r})
first = store.enqueue("count", "local", {{"steps": 2}})
assert run_worker({str(tmp_path / "ws")!r}, once=True) == 1
assert store.get(first).status == "finished", store.get(first)
second = store.enqueue("count", "waits", {{}})
code = main(["worker", "--home", {str(tmp_path / "ws")!r}, "--backend", "ray", "--ray-address", "local"])
assert code == 2 and store.get(second).status == "queued", code
assert "ray" not in sys.modules
print("ok")
"""
    )
    env = os.environ | {"FUSIONLAB_EXECUTORS": EXECUTORS, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr
    assert 'pip install "fusionlab[ray]"' in result.stderr


def test_an_unreachable_cluster_is_a_clear_error_and_runs_stay_queued(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    ws = Workspace(tmp_path / "ws").ensure()
    store = RunStore(ws.runs_db)
    run_id = store.enqueue("count", "waits", {})
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    command = [sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(ws.root), "--backend", "ray"]
    started = time.monotonic()
    result = subprocess.run(
        [*command, "--ray-address", address], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"cannot reach the Ray cluster at {address}" in result.stderr and "stay queued" in result.stderr
    assert time.monotonic() - started < 60
    run = store.get(run_id)
    assert run.status == QUEUED and run.attempts == 0 and "cannot reach the Ray cluster" in (run.message or "")


def test_queue_starts_the_backend_the_server_chose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ensure_worker`` (the Train page's "Queue", ``fusionlab train``) starts a Ray dispatcher when the backend
    says so, and no local worker beside a dispatcher that serves the queue."""
    pytest.importorskip("ray")
    from fusionlab.worker import ensure_worker, lock_path, try_lock

    ws = Workspace(tmp_path / "ws").ensure()
    store = RunStore(ws.runs_db)
    run_id = store.enqueue("count", "waits", {})
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FUSIONLAB_BACKEND", "ray")
    monkeypatch.setenv("FUSIONLAB_RAY_ADDRESS", address)
    assert ensure_worker(ws)
    log = ws.logs_dir / "worker-ray.log"
    wait_until(lambda: "stay queued" in (log.read_text() if log.exists() else ""), "the dispatcher to give up")
    assert f"cannot reach the Ray cluster at {address}" in log.read_text() and store.get(run_id).status == QUEUED

    fd = try_lock(lock_path(ws, "ray"), patience=1.0)  # as a serving dispatcher holds it
    try:
        assert not ensure_worker(ws, backend=BackendSettings())  # no local worker beside it
    finally:
        os.close(fd)  # type: ignore[arg-type]


def _env() -> dict[str, str]:
    return os.environ | {"FUSIONLAB_EXECUTORS": EXECUTORS, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}


# -- on a simulated cluster ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """A head without CPUs and two one-CPU nodes; this process is connected to it (the dispatcher reuses the
    connection). Shut down at the end, whatever happened."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    saved = {key: os.environ.get(key) for key in ("PYTHONPATH", "FUSIONLAB_EXECUTORS")}
    os.environ.update(_env())  # the nodes' processes inherit it: they import fusionlab and the fakes
    sim = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            sim.add_node(num_cpus=1)
        sim.wait_for_nodes()
        ray.init(address=sim.address, namespace="fusionlab-tests", log_to_driver=False)
        yield sim
    finally:
        ray.shutdown()
        sim.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Running:
    """A dispatcher stepping in a background thread of this process, stopped (and its runs killed) at the end."""

    def __init__(self, ws: Workspace, **settings: object) -> None:
        from fusionlab.ray_backend.dispatcher import Dispatcher

        self.dispatcher = Dispatcher(ws, BackendSettings(backend="ray", **settings)).start()  # type: ignore[arg-type]
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.dispatcher.step()
                time.sleep(0.05)
        except BaseException as err:  # surfaced by stop()
            self.error = err

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.dispatcher.close("the test ended")
        assert self.error is None, self.error


@pytest.fixture
def ws(tmp_path: Path, cluster: object) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def dispatch(ws: Workspace) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(**settings: object) -> Running:
        started.append(Running(ws, **settings))
        return started[-1]

    yield start
    for running in started:
        running.stop()


def wait_cluster_idle(cpus: float = 2.0) -> None:
    import ray

    wait_until(lambda: ray.available_resources().get("CPU", 0.0) >= cpus, "the cluster's CPUs to be free")


@pytest.mark.ray
def test_two_runs_at_once_on_different_nodes(ws: Workspace, dispatch: Callable[..., Running]) -> None:
    """Two one-CPU nodes: the first two runs at once, one on each; the third, in queue order, when one ends."""
    store = RunStore(ws.runs_db)
    ids = [store.enqueue("count", f"run{i}", {"steps": 8, "delay": 0.25, "snapshot_every": 4}) for i in range(2)]
    third = store.enqueue("count", "third", {"steps": 1})
    dispatch()
    wait_until(lambda: all(store.get(i).status == FINISHED for i in [*ids, third]), "the runs to finish")
    runs = [store.get(i) for i in ids]
    assert runs[0].started_at < runs[1].ended_at and runs[1].started_at < runs[0].ended_at  # at the same time
    assert runs[0].node and runs[1].node and runs[0].node != runs[1].node
    assert store.get(third).started_at >= min(r.ended_at for r in runs)  # it waited for room, in queue order
    assert [r.attempts for r in runs] == [1, 1] and all(r.device == "ray:cpu" for r in runs)
    assert runs[0].final_metrics == {"loss": 1 / 8, "steps": 8} and runs[0].artifacts == {"device": "cpu"}
    assert list(store.metrics(ids[0]).query("name == 'loss'")["step"]) == list(range(1, 9))
    assert [s.step for s in store.snapshots(ids[0])] == [4, 8]
    assert store.snapshots(ids[0])[0].payload == {"layers": [[0.25, 0.75]], "adapter_names": ["a", "b"]}
    record = run_record(runs[0])
    assert record["node"] == runs[0].node and record["attempts"] == 1


@pytest.mark.ray
def test_live_metrics_reach_the_store_within_two_seconds(ws: Workspace, dispatch: Callable[..., Running]) -> None:
    store = RunStore(ws.runs_db)
    run_id = store.enqueue("clock", "live", {"steps": 12, "delay": 0.25})
    dispatch()
    wait_until(lambda: len(store.metrics(run_id).query("name == 'sent_at'")) >= 3, "metrics while it runs")
    assert store.get(run_id).status == RUNNING and 0 < store.get(run_id).progress < 1
    wait_until(lambda: store.get(run_id).status == FINISHED, "the run to finish")
    sent = store.metrics(run_id).query("name == 'sent_at'")
    latency = sent["created_at"] - sent["value"]
    assert len(sent) == 12 and latency.max() < 2.0, latency.describe()


@pytest.mark.ray
def test_cancel_stops_a_remote_run_within_ten_seconds(ws: Workspace, dispatch: Callable[..., Running]) -> None:
    """A run that checks its cancel stops by itself; one that never does is killed; both free their CPU."""
    wait_cluster_idle()
    store = RunStore(ws.runs_db)
    polite = store.enqueue("count", "polite", {"steps": 400, "delay": 0.1})
    stuck = store.enqueue("stubborn", "stuck", {"seconds": 120})
    dispatch()
    wait_until(lambda: len(store.metrics(polite)) > 0, "the first run's metrics")
    wait_until(lambda: store.get(stuck).progress == 0.5, "the second run to start")
    asked = time.monotonic()
    store.request_cancel(polite)
    store.request_cancel(stuck)
    wait_until(lambda: {store.get(polite).status, store.get(stuck).status} == {CANCELLED}, "both to be cancelled")
    assert time.monotonic() - asked < 10.0
    wait_cluster_idle()  # the killed one's CPU is free again


@pytest.mark.ray
def test_a_node_removed_mid_run_retries_it_elsewhere_once(
    ws: Workspace, cluster: object, dispatch: Callable[..., Running]
) -> None:
    wait_cluster_idle()
    store = RunStore(ws.runs_db)
    run_id = store.enqueue("checkpoint", "survivor", {"hold_seconds": 4.0})
    dispatch()
    wait_until(lambda: store.get(run_id).node is not None and store.get(run_id).progress == 0.5, "the run to start")
    first_node = store.get(run_id).node
    doomed = next(n for n in cluster.worker_nodes if n.node_id == first_node)  # type: ignore[attr-defined]
    cluster.remove_node(doomed, allow_graceful=False)  # type: ignore[attr-defined]
    try:
        wait_until(lambda: store.get(run_id).status == FINISHED, "the run to finish on the other node")
        run = store.get(run_id)
        assert run.attempts == 2 and run.node != first_node
        assert run.artifacts == {"checkpoint": str(ws.adapter_dir("survivor"))}
        assert sorted(p.name for p in ws.adapter_dir("survivor").iterdir()) == [CHECKPOINT_MARKER, "weights.bin"]
        assert ws.list_adapters() == ["survivor"]
        assert [r.id for r in store.list_runs()] == [run_id]  # one run, never two
    finally:
        cluster.add_node(num_cpus=1)  # type: ignore[attr-defined]
        cluster.wait_for_nodes()  # type: ignore[attr-defined]


@pytest.mark.ray
def test_a_restarted_dispatcher_finishes_the_run_once(
    ws: Workspace, cluster: object, dispatch: Callable[..., Running]
) -> None:
    """The dispatcher is killed (SIGKILL) under a run; the next one queues it again and runs it to the end:
    one run, one set of artifacts, one curve."""
    wait_cluster_idle()
    store = RunStore(ws.runs_db)
    run_id = store.enqueue("checkpoint", "restarted", {"hold_seconds": 3.0})
    command = [sys.executable, "-m", "fusionlab.cli", "worker", "--home", str(ws.root), "--backend", "ray"]
    command += ["--ray-address", cluster.address, "--idle-exit", "60", "--nice", "0"]  # type: ignore[attr-defined]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        wait_until(lambda: store.get(run_id).progress == 0.5, "the first dispatcher's run to start")
        assert store.get(run_id).worker_pid == first.pid
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
    assert store.get(run_id).status == RUNNING  # left behind, as a crash leaves it
    dispatch()  # the next dispatcher
    wait_until(lambda: store.get(run_id).status == FINISHED, "the run to finish under the new dispatcher")
    run = store.get(run_id)
    assert run.attempts == 2 and run.worker_pid == os.getpid()
    assert ws.list_adapters() == ["restarted"] and [r.id for r in store.list_runs()] == [run_id]
    assert not [p for p in ws.adapters_dir.iterdir() if p.name.startswith(TMP_PREFIX)]
    progress = store.metrics(run_id)
    assert progress.empty or not progress.duplicated(["step", "name"]).any()


@pytest.mark.ray
@pytest.mark.slow
def test_real_adapter_and_fusion_runs_train_on_the_cluster(
    ws: Workspace, dispatch: Callable[..., Running], shared_data_dir: Path
) -> None:
    """The real training executor on a node: an adapter trained from task data shipped through the object store,
    then a fusion over it and a pack adapter (both checkpoints shipped the same way; queued behind the adapter,
    the fusion waits for it to be published); both published here, loadable, scored."""
    from fusionlab.pack.store import PACK_DIR, install_pack
    from fusionlab.runspec import AdapterRun, Budget, FusionRun, run_result

    wait_cluster_idle()
    install_pack(ws, PACK_DIR)
    budget = Budget(steps=2, batch_size=4, max_length=32, max_train_samples=16, max_eval_samples=16, eval_steps=2)
    adapter = AdapterRun(task="rte", name="rte-own", training_config=budget.training_config(),
                         model_config=budget.model_config(), data_dir=str(shared_data_dir))  # fmt: skip
    fusion = FusionRun(target_task="rte", adapters=["rte-own", "mnli"], name="rte-own-attention",
                       training_config=budget.training_config(), model_config=budget.model_config(),
                       data_dir=str(shared_data_dir))  # fmt: skip
    store = RunStore(ws.runs_db)
    ids = [store.enqueue(run.kind, run.name, run.to_dict()) for run in (adapter, fusion)]
    dispatch()
    wait_until(lambda: all(store.get(i).is_terminal for i in ids), "both real runs to end", timeout=300)
    runs = [store.get(i) for i in ids]
    assert [r.status for r in runs] == [FINISHED, FINISHED], [r.error for r in runs]
    assert all(r.node for r in runs) and "rte-own" in ws.list_adapters() and "rte-own-attention" in ws.list_fusions()
    assert runs[1].started_at >= runs[0].ended_at  # it read what the adapter run published
    for run in runs:
        result = run_result(run)
        assert result is not None and 0.0 <= result.score <= 1.0
        assert Path(result.checkpoint).is_relative_to(ws.root)  # a path here, not on the node
    assert not store.metrics(ids[0]).empty  # the training curve came back live
    from fusionlab.model import FusionModel

    model = FusionModel.from_pretrained(ws.fusion_dir("rte-own-attention"), adapters_dir=ws.adapters_dir)
    assert model.adapter_manager.names == ["rte-own", "mnli"]
