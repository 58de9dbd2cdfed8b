"""A comparison is a run kind: its typed spec round-trips through the run store, and ``fusionlab compare`` queues
it for the worker, which lists, follows and cancels it like a training run (real worker, real CB data)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time

import pytest

from fusionlab.cli import main
from fusionlab.composition.results import CompareOptions
from fusionlab.composition.run import CompareRun
from fusionlab.pack.store import PACK_DIR
from fusionlab.runspec import RUN_KINDS, RunKind, kind_saving, parse_run, run_task, spec_class
from fusionlab.runstore import CANCELLED, RUNNING
from fusionlab.worker import builtin_executors, worker_pid
from fusionlab.workspace import Workspace


def test_a_compare_run_round_trips_through_its_stored_form():
    run = CompareRun(options=CompareOptions(target="cb", adapters=["cb", "mnli"], seed=7), data_dir="/data")
    stored = json.loads(json.dumps(run.to_dict()))
    assert stored["schema_version"] >= 2 and stored["name"] == "cb-s7"
    assert parse_run(RunKind.COMPARE, stored) == run
    assert run_task("compare", stored) == "cb"
    assert kind_saving("comparison") == RunKind.COMPARE and spec_class("compare") is CompareRun
    assert builtin_executors()["compare"] == CompareRun.executor
    assert set(RUN_KINDS) == set(RunKind)  # every kind has its spec
    with pytest.raises(ValueError, match=r"CompareOptions\.adapters"):
        parse_run("compare", {**stored, "options": {**stored["options"], "adapters": ["cb"]}})
    with pytest.raises(ValueError, match="unknown field"):
        parse_run("compare", {**stored, "steps": 3})


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def _wait(condition, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_queued_comparison_is_listed_followed_and_cancelled_by_the_worker(tmp_path, shared_data_dir, monkeypatch):
    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))  # the pack's adapters, as a fresh workspace has them
    home = tmp_path / "ws"
    common = ("--home", str(home), "--data-dir", str(shared_data_dir))
    code, out = _cli(
        "compare", "cb", "--adapters", "cb,mnli", "--methods", "fusion:attention", "--max-steps", "5000",
        "--max-length", "64", "--no-curves", "--no-wait", *common,
    )  # fmt: skip
    assert code == 0 and "queued run 1 (compare cb-s42)" in out, out
    workspace = Workspace(home)
    try:

        def record() -> dict:
            return json.loads(_cli("runs", "show", "1", "--json", "--home", str(home))[1])

        _wait(lambda: record()["status"] == RUNNING and "step" in (record()["message"] or ""), "training steps")
        running = record()
        assert running["kind"] == "compare" and running["task"] == "cb" and 0 < running["progress"] < 0.5
        assert running["message"].startswith("method 1/1: fusion:attention, step ")
        assert [r["name"] for r in json.loads(_cli("runs", "--json", "--home", str(home))[1])] == ["cb-s42"]
        assert _cli("runs", "cancel", "1", "--home", str(home))[0] == 0
        _wait(lambda: record()["status"] == CANCELLED, "the worker to cancel the comparison")
        assert not (home / "comparisons" / "cb-s42" / "comparison.json").exists()  # nothing half-written is kept
    finally:
        pid = worker_pid(workspace)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
