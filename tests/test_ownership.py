"""On a classroom server nobody replaces another visitor's work: a student's default names carry the student's
name, a name another visitor's run holds (queued, running, or on disk) is refused with the reason, and the Train
page's note says before the click what queueing will do. Real run store, real workspace (the tiny demo's)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fusionlab.dashboard.ownership import TEACHER, NameTaken, personal_name
from fusionlab.dashboard.train_view import (
    FUSION_LIMITS,
    TRAIN_FUSION,
    Limits,
    Requester,
    fusion_run_config,
    queue_adapter_runs,
    queue_fusion_run,
)
from fusionlab.dashboard.visitors import Visitor, new_token
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
ANNA, BEN = Visitor(new_token(), "Anna K."), Visitor(new_token(), "Ben")


def _student(visitor: Visitor) -> Requester:
    return Requester(visitor.owner_id, visitor.name, limit=4, guarded=True)


def test_a_personal_name_is_a_safe_directory_name():
    assert personal_name("rte-attention", "Anna K.") == "rte-attention-anna-k"
    assert personal_name("cb", "merry-otter-42") == "cb-merry-otter-42"
    assert personal_name("cb", "  ..//  ") == "cb-visitor"
    assert len(personal_name("x" * 60, "a very long visitor name")) <= 64


@pytest.fixture
def classroom(tmp_path, tiny_workspace) -> tuple[Workspace, RunStore]:
    workspace = Workspace(shutil.copytree(tiny_workspace.root, tmp_path / "ws"))
    return workspace, RunStore(workspace.runs_db)


def _fusion(name: str = "") -> object:
    return fusion_run_config("rte", ["rte", "mnli"], limits=FUSION_LIMITS, name=name)


@pytest.mark.slow
def test_students_cannot_replace_each_others_or_the_teachers_fusions(classroom):
    workspace, store = classroom
    anna, ben, teacher = _student(ANNA), _student(BEN), Requester("t", "teacher")
    # the tiny demo's rte-attention was made outside the dashboard: the teacher's
    with pytest.raises(NameTaken, match=f"belongs to {TEACHER}.*rte-attention-anna-k"):
        queue_fusion_run(store, workspace, _fusion("rte-attention"), anna)
    default = anna.default_name(workspace, "rte-attention", "fusion")
    assert default == "rte-attention-anna-k"
    queue_fusion_run(store, workspace, _fusion(default), anna)  # her own name: queued
    with pytest.raises(NameTaken, match=r"belongs to Anna K\."):
        queue_fusion_run(store, workspace, _fusion(default), ben)  # Ben may not race her queued run
    refused, why = ben.name_note(store, workspace, TRAIN_FUSION, default, "rte-attention-ben")
    assert refused and "belongs to Anna K." in why and "rte-attention-ben" in why  # the note says it first
    assert anna.name_note(store, workspace, TRAIN_FUSION, default, default) is None  # hers, nothing on disk yet
    # the teacher (and a single-user server) may replace anything but the pack's; the note says so
    assert teacher.name_note(store, workspace, TRAIN_FUSION, "rte-attention", "rte-attention") == (
        False,
        "A fusion named rte-attention exists; this run replaces it when it ends.",
    )
    queue_fusion_run(store, workspace, _fusion("rte-attention"), teacher)
    # adapters: a student's carry her name, so two students training rte never meet
    limits = Limits.of(FUSION_LIMITS)
    queue_adapter_runs(store, ["rte"], {}, "relu", limits, None, workspace, anna)
    queue_adapter_runs(store, ["rte"], {}, "relu", limits, None, workspace, ben)
    names = {run.name: run.owner_name for run in store.list_runs(kind="train_adapter")}
    assert names == {"rte-anna-k": "Anna K.", "rte-ben": "Ben"}


@pytest.mark.slow
def test_the_train_and_runs_pages_show_the_classroom_rules(classroom, monkeypatch):
    workspace, store = classroom
    monkeypatch.setenv("FUSIONLAB_HOME", str(workspace.root))
    monkeypatch.setenv("FUSIONLAB_CLASSROOM", "1")
    from fusionlab import worker

    monkeypatch.setattr(worker, "ensure_worker", lambda *a, **k: False)
    at = AppTest.from_file(str(REPO / "app_pages" / "train.py"), default_timeout=120)
    at.run()
    at.multiselect(key="fusion_adapters").set_value(["rte", "mnli"]).run()
    assert not at.exception, at.exception
    name_box = at.text_input(key="fusion_name")
    assert name_box.placeholder.startswith("rte-attention-")  # the student's own default
    name_box.set_value("rte-attention").run()
    assert len([e for e in at.error if "belongs to the teacher" in e.value]) == 1  # said once, under the name
    assert at.button(key="queue_fusion").disabled  # and the button waits for another name
    assert not store.list_runs(kind="train_fusion")  # refused, nothing queued
    name_box.set_value("").run()
    at.button(key="queue_fusion").click().run()
    [queued] = store.list_runs(kind="train_fusion")
    assert queued.name == name_box.placeholder and queued.owner is not None

    runs = AppTest.from_file(str(REPO / "app_pages" / "runs.py"), default_timeout=120)
    runs.run()
    assert not runs.exception, runs.exception
    assert runs.toggle(key="runs_mine") is not None


def test_the_running_run_says_how_long_it_ran_and_about_how_long_is_left(tmp_path):
    import dataclasses

    import pandas as pd

    from fusionlab.dashboard.train_view import QueueView, clock

    store = RunStore(tmp_path / "runs.sqlite")
    run = store.get(store.enqueue("train_adapter", "rte", {"task": "rte"}))
    view = QueueView([], dataclasses.replace(run, started_at=1000.0, progress=0.25), pd.DataFrame(), [], None, True)
    assert view.timing(now=1100.0) == "running for 1:40 · about 5:00 left"
    early = dataclasses.replace(view, active=dataclasses.replace(view.active, progress=0.01))
    assert early.timing(now=1030.0) == "running for 0:30"  # too early to extrapolate
    assert clock(3 * 3600 + 125) == "3:02:05"


def test_a_student_sees_no_server_paths(classroom, monkeypatch):
    from fusionlab.dashboard.runs_view import config_diff
    from fusionlab.dashboard.visitors import sees_server_paths, shown_path

    workspace, store = classroom
    assert sees_server_paths(ANNA, classroom=False) and not sees_server_paths(ANNA, classroom=True)
    assert sees_server_paths(Visitor(new_token(), "T", teacher=True), classroom=True)
    assert shown_path("/srv/class/ws", False) == "ws" and shown_path("/srv/class/ws", True) == "/srv/class/ws"
    run = store.get(store.enqueue("train_adapter", "rte", {"task": "rte", "data_dir": "/srv/secret/data"}))
    hidden = config_diff(run, run, paths_visible=False).set_index("key")
    assert hidden.loc["data_dir", "A"] == '"data"'
    assert config_diff(run, run).set_index("key").loc["data_dir", "A"] == '"/srv/secret/data"'

    monkeypatch.setenv("FUSIONLAB_HOME", str(workspace.root))
    monkeypatch.setenv("FUSIONLAB_CLASSROOM", "1")
    at = AppTest.from_file(str(REPO / "app_pages" / "home.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert str(workspace.root) not in shown and f"`{workspace.root.name}`" in shown


def test_a_run_queued_outside_the_dashboard_is_labelled_the_teachers(tmp_path):
    """Name ownership counts a run queued from the command line as the teacher's; the "queued by" column says so
    rather than leaving the cell empty."""
    from fusionlab.dashboard.visitors import OUTSIDE_LABEL, owner_label

    store = RunStore(Workspace(tmp_path).ensure().runs_db)
    outside = store.get(store.enqueue("train_adapter", "rte", {}))
    visitor = Visitor(new_token(), "anna")
    mine = store.get(store.enqueue("train_adapter", "cb", {}, owner=visitor.owner_id, owner_name="anna"))
    assert owner_label(outside, visitor) == OUTSIDE_LABEL and owner_label(mine, visitor) == "you"
