"""Sweeps: which sources help a target, answered by queueing every fusion as an ordinary run.

Planning and bounds, the group record (atomic names, JSON round trip), the analysis's arithmetic on a real run
store, and end to end on the tiny workspace: ``fusionlab sweep`` queues the runs, the real worker trains them,
``fusionlab sweeps show`` reports the grid, the best subset and each source's effect; cancel and resume act on
the group, and resume never retrains a finished cell.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from fusionlab.runspec import FusionStats, RunResult
from fusionlab.runstore import CANCELLED, FINISHED, RunStore
from fusionlab.sweep.analysis import sweep_report
from fusionlab.sweep.group import (
    SweepRecord,
    cancel_sweep,
    claim_name,
    load_record,
    queue_sweep,
    resume_sweep,
    save_record,
    sweep_statuses,
)
from fusionlab.sweep.spec import MAX_SWEEP_RUNS, SweepCell, SweepSpec, cells, plan_runs, run_name, source_subsets
from fusionlab.uncertainty import Score
from fusionlab.workspace import Workspace
from tests.conftest import cli, cli_process
from tests.test_app_pages import chart_titles, open_page


# -- planning ------------------------------------------------------------------------------------------------
def test_subset_modes():
    sources = ["mnli", "qnli", "sst2"]
    assert source_subsets(sources, "singles") == [("mnli",), ("qnli",), ("sst2",)]
    assert source_subsets(sources, "leave-one-out") == [
        ("qnli", "sst2"),
        ("mnli", "sst2"),
        ("mnli", "qnli"),
        tuple(sources),
    ]
    every = source_subsets(sources, "all")
    assert len(every) == 7 and len(set(every)) == 7 and every[-1] == tuple(sources)


def test_a_sweep_plans_ordinary_fusion_runs_over_the_target_and_each_subset():
    spec = SweepSpec("rte", ["mnli", "qnli"], methods=["attention", "weighted"], seeds=[1, 2])
    planned = plan_runs(spec, "rte-sweep")
    assert len(planned) == spec.run_count == 3 * 2 * 2
    assert len({run.name for _, run in planned}) == len(planned)
    cell, run = planned[-1]
    assert run.adapters == ["rte", *cell.subset] and run.fusion_config.fusion_method == cell.method
    assert run.training_config.seed == cell.seed == 2
    assert [c.seed for c in cells(spec)[:6]] == [1] * 6  # seed by seed: a sweep cut short has each subset once


def test_sizes_a_user_types_are_bounded_with_the_reason():
    with pytest.raises(ValueError, match=f"more than {MAX_SWEEP_RUNS}"):
        SweepSpec("rte", [f"s{i}" for i in range(8)], methods=["attention", "weighted"], seeds=[1, 2])
    with pytest.raises(ValueError, match="at most 8 sources"):
        SweepSpec("rte", [f"s{i}" for i in range(9)], subsets="singles")
    with pytest.raises(ValueError, match="holds the target"):
        SweepSpec("rte", ["rte", "mnli"])
    with pytest.raises(ValueError, match="unknown method 'lora'"):
        SweepSpec("rte", ["mnli"], methods=["lora"])
    with pytest.raises(ValueError, match="seeds"):
        SweepSpec("rte", ["mnli"], seeds=[1, 1])


def test_a_run_name_too_long_for_a_directory_becomes_a_mask():
    sources = ["a-rather-long-source-name", "another-long-source-name", "third"]
    name = run_name("rte-sweep", SweepCell(tuple(sources), "attention", 3), sources)
    assert name == "rte-sweep-m7-attention-s3"
    assert run_name("rte-sweep", SweepCell(("third",), "weighted", 1), sources) == "rte-sweep-third-weighted-s1"


def test_records_round_trip_and_names_are_claimed_once(tmp_path):
    workspace = Workspace(tmp_path).ensure()
    assert [claim_name(workspace, "rte-sweep") for _ in range(3)] == ["rte-sweep", "rte-sweep-2", "rte-sweep-3"]
    record = SweepRecord("rte-sweep", SweepSpec("rte", ["mnli"], seeds=[1, 2]), {"mnli/attention/s1": 4})
    save_record(workspace, record)
    assert load_record(workspace, "rte-sweep") == record
    assert json.loads((tmp_path / "sweeps" / "rte-sweep.json").read_text())["schema_version"] >= 2


# -- analysis ------------------------------------------------------------------------------------------------
def _finished(store: RunStore, cell: SweepCell, score: float, own: float, weights: list[float]) -> int:
    run_id = store.enqueue("train_fusion", cell.key, {})
    store.claim_next(os.getpid(), "cpu")
    names = ["rte", *cell.subset]
    result = RunResult(
        kind="fusion", name=cell.key, task="rte", checkpoint="-", main_metric="accuracy",
        metrics={"accuracy": score}, own_adapter=Score("accuracy", own, own, own, 100),
        score_interval=Score("accuracy", score, score - 0.05, score + 0.05, 100),
        fusion_stats=FusionStats(names, [weights, weights]),
    )  # fmt: skip
    store.finish(run_id, result.to_dict(), result.artifacts())
    return run_id


def test_marginal_effects_best_subset_and_usage_from_the_runs(tmp_path):
    workspace = Workspace(tmp_path).ensure()
    store = RunStore(workspace.runs_db)
    spec = SweepSpec("rte", ["mnli", "sst2"], seeds=[1, 2])
    scores = {("mnli",): (0.60, 0.62), ("sst2",): (0.55, 0.55), ("mnli", "sst2"): (0.64, 0.60)}
    record = SweepRecord("s", spec)
    for cell in cells(spec):
        n = len(cell.subset) + 1
        weights = [0.6 if i == 1 else 0.4 / (n - 1) for i in range(n)]  # the first source gets 0.6
        record.runs[cell.key] = _finished(store, cell, scores[cell.subset][cell.seed - 1], 0.50, weights)
    report = sweep_report(workspace, record)
    assert report.finished == report.total == 6 and report.own_adapter == pytest.approx(0.50)
    best = report.best[0]
    assert best.best.subset == ("mnli", "sst2") and best.runner_up.subset == ("mnli",)  # 0.62 vs 0.61
    assert best.margin.mean == pytest.approx(0.01) and best.margin.within_noise  # +0.04 and -0.02 by seed
    effects = {e.source: e for e in report.effects}
    # mnli: alone vs own (0.10, 0.12), and sst2 -> mnli+sst2 (0.09, 0.05)
    assert effects["mnli"].effect.mean == pytest.approx((0.10 + 0.12 + 0.09 + 0.05) / 4)
    assert effects["mnli"].effect.count == 4 and not effects["mnli"].effect.within_noise
    # sst2: alone vs own (0.05, 0.05), and mnli -> mnli+sst2 (0.04, -0.02)
    assert effects["sst2"].effect.mean == pytest.approx((0.05 + 0.05 + 0.04 - 0.02) / 4)
    # usage, as a multiple of 1/N: mnli gets 0.6 wherever it is first (x2 alone, x3 in the pair)
    assert effects["mnli"].usage == pytest.approx((0.6 * 2 * 2 + 0.6 * 3 * 2) / 4)


# -- end to end ----------------------------------------------------------------------------------------------
def _cli(home, *args: str) -> subprocess.CompletedProcess:
    """`fusionlab ARGS --home HOME` as a command: what queues the runs and starts the worker."""
    return cli_process(*args, "--home", str(home))


def _here(home, *args: str) -> subprocess.CompletedProcess:
    """The same in this process, for what follows, shows or requeues (the worker is already running)."""
    return cli(home, *args, "--home", str(home))


BUDGET = ("--profile", "classroom", "--max-steps", "2", "--max-train-samples", "64", "--max-eval-samples", "32",
          "--max-length", "48", "--batch-size", "8", "--eval-steps", "2")  # fmt: skip


@pytest.mark.slow
def test_a_sweep_runs_through_the_worker_and_reports_its_grid(tiny_workspace, tmp_path, shared_data_dir):
    home = tmp_path / "ws"
    shutil.copytree(tiny_workspace.root, home)
    workspace = Workspace(home)
    data = ("--data-dir", str(shared_data_dir))
    queued = _cli(home, "sweep", "rte", "--sources", "mnli,sst2", "--seeds", "1,2", "--no-wait", *BUDGET, *data)
    assert queued.returncode == 0, queued.stderr
    assert "queued sweep rte-sweep: 6 fusion runs" in queued.stdout
    record = load_record(workspace, "rte-sweep")
    followed = _here(home, "sweeps", "follow", "rte-sweep")  # the worker the command started trains them
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert sweep_statuses(workspace, record) == {FINISHED: 6}
    shown = _here(home, "sweeps", "show", "rte-sweep", "--json")
    report = json.loads(shown.stdout)
    assert report["finished"] == 6 and len(report["grid"]) == 3
    assert all(len(cell["seeds"]) == 2 for cell in report["grid"])
    assert {e["source"] for e in report["effects"]} == {"mnli", "sst2"}
    assert all(e["usage"] is not None and e["effect"]["count"] == 4 for e in report["effects"])
    text = _here(home, "sweeps", "show", "rte-sweep").stdout
    assert "adding mnli (attention)" in text and "best" in text
    assert "rte-sweep" in _here(home, "sweeps").stdout
    page = open_page("runs.py", home, {"sweep": "rte-sweep"})  # the Runs page draws the same report
    assert not page.exception and not page.error
    titles = chart_titles(page)
    assert any(t.startswith("rte-sweep: dev accuracy of each fusion") for t in titles)
    assert "Does the fusion lean on the sources that help? Weight given vs score added" in titles
    assert any(c.value.startswith("6 of 6 runs finished") for c in page.caption)

    # cancel and resume act on the group; resume queues only what did not finish
    again = _cli(home, "sweep", "rte", "--sources", "mnli", "--subsets", "singles", "--no-wait", *BUDGET, *data)
    assert "queued sweep rte-sweep-2: 1 fusion runs" in again.stdout
    second = load_record(workspace, "rte-sweep-2")
    cancelled_id = second.runs["mnli/attention/s1"]
    assert cancel_sweep(workspace, second) == 1
    assert _here(home, "sweeps", "follow", "rte-sweep-2").returncode == 1  # it ended, not finished
    assert sweep_statuses(workspace, second) == {CANCELLED: 1}
    resumed = _here(home, "sweeps", "resume", "rte-sweep-2")
    assert "1 run(s) queued again" in resumed.stdout
    assert _here(home, "sweeps", "follow", "rte-sweep-2").returncode == 0
    second = load_record(workspace, "rte-sweep-2")
    assert sweep_statuses(workspace, second) == {FINISHED: 1}
    assert second.runs["mnli/attention/s1"] != cancelled_id  # a new run in the cell's slot
    assert resume_sweep(workspace, load_record(workspace, "rte-sweep")) == []  # nothing to redo


def test_a_sweep_over_missing_adapters_is_refused_before_anything_is_queued(tmp_path):
    result = _cli(tmp_path / "ws", "sweep", "rte", "--sources", "nope,mnli", "--no-wait")
    assert result.returncode != 0 and "does not have:" in result.stderr and "nope" in result.stderr
    assert not (tmp_path / "ws" / "sweeps").exists() or not list((tmp_path / "ws" / "sweeps").iterdir())


def test_queue_sweep_records_what_it_queued(tmp_path):
    workspace = Workspace(tmp_path).ensure()
    record = queue_sweep(workspace, SweepSpec("rte", ["mnli", "qnli"], subsets="singles"))
    assert record.name == "rte-sweep" and len(record.runs) == 2
    store = RunStore(workspace.runs_db)
    assert [store.get(i).name for i in record.runs.values()] == [
        "rte-sweep-mnli-attention-s1",
        "rte-sweep-qnli-attention-s1",
    ]
    assert load_record(workspace, "rte-sweep") == record
