"""The run store and the workspace: JSON round trips, the run life cycle, and concurrent use by processes."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fusionlab.runstore import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, RunStore
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace, atomic_directory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


def _child_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


# A child waits for the go file, so that the processes really overlap instead of running one after the other.
_WAIT_FOR_GO = """
import json, os, sys, time
from pathlib import Path
from fusionlab.runstore import RunStore
db, go = sys.argv[1], Path(sys.argv[2])
deadline = time.monotonic() + 20
while not go.exists():
    assert time.monotonic() < deadline, "no go signal"
    time.sleep(0.002)
store = RunStore(db)
"""


def _run_children(script: str, args: list[list[str]], go: Path) -> list[str]:
    """Start one child per argument list, release them together, and return their stdouts."""
    code = textwrap.dedent(_WAIT_FOR_GO) + textwrap.dedent(script)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code, *extra],
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in args
    ]
    go.touch()
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out)
    return outputs


# -- runs ------------------------------------------------------------------------------------------------
def test_config_round_trips_through_json(store: RunStore) -> None:
    config = {
        "adapter": {"adapter_size": 48, "non_linearity": "gelu"},
        "learning_rate": 1e-4,
        "task_names": ["sst2", "rte"],
        "target_task": None,
        "freeze": True,
        "note": "Fusion — ünïcode ✓",
    }
    run_id = store.enqueue("train_adapter", "sst2-adapter", config)
    run = store.get(run_id)
    assert run.config == config
    assert (run.kind, run.name, run.status) == ("train_adapter", "sst2-adapter", QUEUED)
    assert isinstance(run.created_at, float)
    assert run.started_at is None and run.final_metrics is None and run.cancel_requested is False


def test_store_uses_wal(store: RunStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_config_must_be_json_serialisable(store: RunStore) -> None:
    with pytest.raises(TypeError, match="run config must be JSON serialisable"):
        store.enqueue("demo", "x", {"bad": object()})
    assert store.list_runs() == []


def test_unknown_run_id_raises_a_plain_key_error(store: RunStore) -> None:
    with pytest.raises(KeyError) as info:
        store.get(7)
    assert str(info.value) == "no run with id 7"
    for call in (
        lambda: store.set_progress(7, 0.5),
        lambda: store.log_metrics(7, 1, {"loss": 1.0}),
        lambda: store.metrics(7),
        lambda: store.request_cancel(7),
        lambda: store.fail(7, "x"),
        lambda: store.queue_position(7),
    ):
        with pytest.raises(KeyError, match="no run with id 7"):
            call()


def test_list_runs_is_newest_first_and_filters(store: RunStore) -> None:
    ids = [store.enqueue(kind, f"run{i}", {}) for i, kind in enumerate(["demo", "train_adapter", "demo"])]
    store.claim_next(worker_pid=1, device="cpu")
    assert [r.id for r in store.list_runs()] == ids[::-1]
    assert [r.id for r in store.list_runs(kind="demo")] == [ids[2], ids[0]]
    assert [r.id for r in store.list_runs(status=QUEUED)] == [ids[2], ids[1]]
    assert [r.id for r in store.list_runs(status=[QUEUED, RUNNING], limit=2)] == [ids[2], ids[1]]
    with pytest.raises(ValueError, match="unknown run status"):
        store.list_runs(status="done")


def test_the_last_ended_run_is_the_one_that_ended_last_not_the_newest(store: RunStore) -> None:
    """Two workers (cpu and a GPU): a long run queued first ends after a short one queued later."""
    long_run, short_run = store.enqueue("demo", "long", {}), store.enqueue("demo", "short", {})
    store.claim_next(worker_pid=1, device="cpu")
    store.claim_next(worker_pid=2, device="cuda:0")
    store.finish(short_run, {}, {})
    store.fail(long_run, "ended later")
    assert [r.id for r in store.list_runs(status=(FINISHED, FAILED))] == [short_run, long_run]
    assert [r.id for r in store.list_runs(status=(FINISHED, FAILED), by_end=True)] == [long_run, short_run]


def test_run_life_cycle(store: RunStore, tmp_path: Path) -> None:
    first = store.enqueue("train_fusion", "fusion", {"adapter_names": ["a", "b"]})
    second = store.enqueue("demo", "demo", {})
    assert (store.queue_position(first), store.queue_position(second)) == (1, 2)
    assert store.active_run() is None

    claimed = store.claim_next(worker_pid=4321, device="cuda:0")
    assert claimed is not None and claimed.id == first
    assert (claimed.status, claimed.worker_pid, claimed.device) == (RUNNING, 4321, "cuda:0")
    assert claimed.started_at is not None and claimed.started_at >= claimed.created_at
    assert store.queue_position(first) is None and store.queue_position(second) == 1
    assert store.active_run().id == first
    assert store.active_run(device="cpu") is None

    store.set_progress(first, 0.25, "epoch 1")
    store.set_progress(first, 1.5)  # clamped, and the message is kept
    run = store.get(first)
    assert (run.progress, run.message) == (1.0, "epoch 1")

    checkpoint = tmp_path / "fusions" / "fusion"
    store.finish(first, {"accuracy": 0.91, "loss": float("nan")}, {"checkpoint": checkpoint})
    run = store.get(first)
    assert run.status == FINISHED and run.is_terminal and run.ended_at >= run.started_at
    assert run.artifacts == {"checkpoint": str(checkpoint)}
    assert run.final_metrics["accuracy"] == 0.91 and math.isnan(run.final_metrics["loss"])
    with pytest.raises(ValueError, match=f"cannot finish run {first}: it is finished"):
        store.finish(first, {}, {})


def test_metrics_and_snapshots_round_trip(store: RunStore) -> None:
    run_id = store.enqueue("train_fusion", "f", {})
    store.log_metrics(run_id, 2, {"loss": 0.5, "learning_rate": 5e-5})
    store.log_metrics(run_id, 1, {"loss": float("nan")})
    store.log_metrics(run_id, 3, {"dev_accuracy": 0.75})
    frame = store.metrics(run_id)
    assert list(frame.columns) == ["step", "name", "value", "created_at"]
    assert frame["step"].tolist() == [1, 2, 2, 3]
    assert frame["name"].tolist() == ["loss", "loss", "learning_rate", "dev_accuracy"]
    assert math.isnan(frame["value"].iloc[0])
    assert frame["value"].iloc[1:].tolist() == [0.5, 5e-5, 0.75]
    assert store.metrics(store.enqueue("demo", "empty", {})).empty

    payload = {"layers": [[0.2, 0.8], [0.6, 0.4]], "adapter_names": ["sst2", "rte"]}
    store.add_snapshot(run_id, 10, payload)
    store.add_snapshot(run_id, 5, {"layers": [[0.5, 0.5]], "adapter_names": ["sst2", "rte"]})
    snapshots = store.snapshots(run_id)
    assert [s.step for s in snapshots] == [5, 10]
    assert snapshots[1].payload == payload


def test_cancel_a_queued_run_takes_effect_at_once(store: RunStore) -> None:
    run_id = store.enqueue("demo", "d", {})
    assert store.request_cancel(run_id) == CANCELLED
    run = store.get(run_id)
    assert run.status == CANCELLED and run.ended_at is not None
    assert store.is_cancel_requested(run_id)
    assert store.claim_next(worker_pid=1, device="cpu") is None
    assert store.request_cancel(run_id) == CANCELLED  # a second click is harmless


def test_cancel_a_running_run_only_flags_it(store: RunStore) -> None:
    run_id = store.enqueue("demo", "d", {})
    store.claim_next(worker_pid=1, device="cpu")
    assert not store.is_cancel_requested(run_id)
    assert store.request_cancel(run_id) == RUNNING
    assert store.is_cancel_requested(run_id) and store.get(run_id).status == RUNNING
    store.mark_cancelled(run_id)
    assert store.get(run_id).status == CANCELLED


def test_mark_dead_runs_failed(store: RunStore) -> None:
    dead = store.enqueue("demo", "dead", {})
    alive = store.enqueue("demo", "alive", {})
    queued = store.enqueue("demo", "queued", {})
    store.claim_next(worker_pid=1234, device="cpu")
    store.claim_next(worker_pid=5678, device="cpu")
    assert store.mark_dead_runs_failed(lambda pid: pid == 5678) == [dead]
    run = store.get(dead)
    assert run.status == FAILED
    assert run.error == "worker process 1234 died while the run was running (killed or crashed)"
    assert store.get(alive).status == RUNNING and store.get(queued).status == QUEUED
    assert store.mark_dead_runs_failed(lambda pid: True) == []


def test_two_processes_enqueueing_at_once_lose_nothing(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / "runs.sqlite"  # both children create the schema at the same moment too
    script = """
    for i in range(50):
        store.enqueue("demo", f"{sys.argv[3]}-{i}", {"i": i, "writer": sys.argv[3]})
    """
    _run_children(script, [[str(db), str(tmp_path / "go"), w] for w in ("a", "b")], tmp_path / "go")
    runs = RunStore(db).list_runs()
    assert len(runs) == 100
    assert len({r.id for r in runs}) == 100
    assert {r.name for r in runs} == {f"{w}-{i}" for w in ("a", "b") for i in range(50)}
    assert all(r.config == {"i": int(r.name.split("-")[1]), "writer": r.name[0]} for r in runs)


def test_concurrent_claims_never_hand_out_a_run_twice(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    store = RunStore(db)
    ids = {store.enqueue("demo", f"r{i}", {}) for i in range(60)}
    script = """
    claimed = []
    while (run := store.claim_next(os.getpid(), "cpu")) is not None:
        assert run.worker_pid == os.getpid()
        claimed.append(run.id)
    print(json.dumps({"pid": os.getpid(), "claimed": claimed}))
    """
    outputs = _run_children(script, [[str(db), str(tmp_path / "go")]] * 3, tmp_path / "go")
    results = [json.loads(out) for out in outputs]
    all_claimed = [run_id for result in results for run_id in result["claimed"]]
    assert sorted(all_claimed) == sorted(ids)  # every run once: none lost, none claimed twice
    for result in results:
        assert all(store.get(run_id).worker_pid == result["pid"] for run_id in result["claimed"])


# -- workspace -------------------------------------------------------------------------------------------
def test_workspace_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUSIONLAB_HOME", raising=False)
    assert Workspace().root == tmp_path / "fusionlab-workspace"
    monkeypatch.setenv("FUSIONLAB_HOME", "from-env")
    assert Workspace().root == tmp_path / "from-env"
    ws = Workspace("explicit").ensure()
    assert ws.root == tmp_path / "explicit"
    assert ws.runs_db == ws.root / "runs.sqlite"
    assert all(d.is_dir() for d in (ws.adapters_dir, ws.fusions_dir, ws.logs_dir))
    for bad in ("", "../escape", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="checkpoint name"):
            ws.adapter_dir(bad)


def test_listings_show_only_complete_checkpoints(tmp_path: Path) -> None:
    ws = Workspace(tmp_path).ensure()
    for name in ("sst2", "rte", ".tmp-mnli-abc123"):
        (ws.adapters_dir / name).mkdir()
        (ws.adapters_dir / name / CHECKPOINT_MARKER).write_text("{}")
    (ws.adapters_dir / "half-written").mkdir()
    (ws.fusions_dir / "f1").mkdir()
    (ws.fusions_dir / "f1" / CHECKPOINT_MARKER).write_text("{}")
    assert ws.list_adapters() == ["rte", "sst2"]
    assert ws.list_fusions() == ["f1"]
    assert Workspace(tmp_path / "missing").list_adapters() == []


def test_atomic_directory_publishes_replaces_and_cleans_up(tmp_path: Path) -> None:
    final = tmp_path / "adapters" / "sst2"
    with atomic_directory(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(f".tmp-{os.getpid()}-sst2-")
        (tmp / "weights").write_text("v1")
        assert not final.exists()
    assert (final / "weights").read_text() == "v1" and not tmp.exists()

    with atomic_directory(final) as tmp:
        (tmp / "weights").write_text("v2")
        assert (final / "weights").read_text() == "v1"  # the old version stays readable meanwhile
    assert (final / "weights").read_text() == "v2"

    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(final) as tmp:
        (tmp / "weights").write_text("v3")
        raise RuntimeError("disk full")
    assert (final / "weights").read_text() == "v2"
    assert sorted(p.name for p in final.parent.iterdir()) == ["sst2"]  # no temporary or old copies left
