"""A shared server: the server decides where things are, visitors own their runs, quotas hold under a rush.

The pages run headlessly with Streamlit's AppTest on a real workspace; the server's settings come from the
environment as on a real server (``FUSIONLAB_HOME``, ``FUSIONLAB_CLASSROOM``, ...).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from fusionlab.dashboard.server_config import ServerConfig, load_server_config
from fusionlab.dashboard.settings import WORKSPACE_KEY
from fusionlab.dashboard.visitors import (
    Visitor,
    can_cancel,
    check_visitor_name,
    generated_name,
    new_token,
    owner_id,
    valid_token,
)
from fusionlab.runstore import QUEUED, QuotaExceeded, RunStore
from fusionlab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "correct horse battery"


# -- server settings ---------------------------------------------------------------------------------------------
def test_settings_come_from_file_environment_and_flags_in_that_order(tmp_path: Path) -> None:
    file = tmp_path / "server.json"
    file.write_text(json.dumps({"home": str(tmp_path / "a"), "classroom": True, "max_queued_per_visitor": 5}))
    env = {"FUSIONLAB_SERVER_CONFIG": str(file), "FUSIONLAB_MAX_QUEUED": "4"}
    config = load_server_config(["--max-queued", "2"], env)
    assert (config.home, config.classroom, config.max_queued_per_visitor) == (str(tmp_path / "a"), True, 2)
    assert load_server_config([], env).max_queued_per_visitor == 4
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    config = load_server_config(["--teacher-passphrase-file", str(secret)], {})
    assert config.is_teacher_passphrase(PASSPHRASE) and not config.is_teacher_passphrase("guess")
    assert PASSPHRASE not in repr(config)
    with pytest.raises(ValueError, match="max_queued_per_visitor: must be at most 100"):
        load_server_config(["--max-queued", "1000"], {})
    with pytest.raises(ValueError, match="FUSIONLAB_MAX_QUEUED must be an integer"):
        load_server_config([], {"FUSIONLAB_MAX_QUEUED": "many"})


def test_only_existing_workspaces_under_the_root_are_offered(tmp_path: Path) -> None:
    root = tmp_path / "root"
    Workspace(root / "class-a").ensure()
    RunStore(Workspace(root / "class-a").runs_db)
    (root / "notes").mkdir()  # a directory, but no workspace
    (root / ".hidden").mkdir()
    RunStore(Workspace(root / ".hidden").ensure().runs_db)
    config = ServerConfig(home=str(tmp_path / "home"), workspace_root=str(root))
    assert [w.root.name for w in config.workspaces()] == ["home", "class-a"]


# -- visitors --------------------------------------------------------------------------------------------------------
def test_visitor_names_and_tokens() -> None:
    token = new_token()
    assert valid_token(token) == token and valid_token("../x") is None and valid_token(None) is None
    assert generated_name(token) == generated_name(token)
    assert check_visitor_name("  Ada L.  ") == "Ada L."
    for bad in ("", "x" * 33, "![t](http:x)", "a\nb"):
        with pytest.raises(ValueError):
            check_visitor_name(bad)
    assert owner_id(token) != token and len(owner_id(token)) == 16


def test_who_may_cancel(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    alice, bob = Visitor(new_token(), "alice"), Visitor(new_token(), "bob")
    teacher = Visitor(new_token(), "teacher", teacher=True)
    run = store.get(store.enqueue("train_adapter", "rte", {}, alice.owner_id, alice.name))
    assert (run.owner, run.owner_name) == (alice.owner_id, "alice")
    assert can_cancel(alice, run, classroom=True) and can_cancel(teacher, run, classroom=True)
    assert not can_cancel(bob, run, classroom=True)
    assert can_cancel(bob, run, classroom=False)  # one user, one dashboard: as before


def test_a_rush_of_clicks_cannot_pass_the_quota(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    owner = owner_id(new_token())
    outcomes: list[object] = []
    barrier = threading.Barrier(10)

    def click() -> None:
        barrier.wait()
        try:
            outcomes.append(store.enqueue("train_adapter", "rte", {}, owner, "x", max_pending=3))
        except QuotaExceeded as err:
            outcomes.append(err)

    threads = [threading.Thread(target=click) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(o, int) for o in outcomes) == 3
    assert len(store.list_runs(status=QUEUED)) == 3
    assert "the most this server allows each visitor (3)" in str(
        next(o for o in outcomes if isinstance(o, QuotaExceeded))
    )


# -- pages -------------------------------------------------------------------------------------------------------------
def _page(name: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app_pages" / name), default_timeout=120)
    return at


@pytest.mark.slow
def test_a_path_in_the_session_reaches_no_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a session holds as its workspace choice, only the offered workspaces are ever opened."""
    monkeypatch.setenv("FUSIONLAB_HOME", str(tmp_path / "home"))
    elsewhere = tmp_path / "x" / "a" / "b"
    at = _page("home.py")
    at.session_state[WORKSPACE_KEY] = str(elsewhere)
    at.run()
    assert not at.exception
    assert not (tmp_path / "x").exists()
    assert (tmp_path / "home" / "adapters").is_dir()


@pytest.mark.slow
def test_classroom_train_page_cancels_only_your_own_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_workspace: Workspace
) -> None:
    import shutil

    home = Path(shutil.copytree(tiny_workspace.root, tmp_path / "ws"))
    monkeypatch.setenv("FUSIONLAB_HOME", str(home))
    monkeypatch.setenv("FUSIONLAB_CLASSROOM", "1")
    monkeypatch.setenv("FUSIONLAB_MAX_QUEUED", "1")
    monkeypatch.setenv("FUSIONLAB_TEACHER_PASSPHRASE", PASSPHRASE)
    from fusionlab import worker

    monkeypatch.setattr(worker, "ensure_worker", lambda *a, **k: False)
    store = RunStore(Workspace(home).runs_db)
    other = Visitor(new_token(), "other")
    theirs = store.enqueue("train_adapter", "cola", {"task": "cola"}, other.owner_id, other.name)

    at = _page("train.py")
    at.run()
    assert not at.exception
    assert at.button(key=f"cancel_{theirs}").disabled
    assert any("other" in m.value for m in at.markdown)

    at.multiselect(key="train_tasks").set_value(["rte"]).run()
    at.number_input(key="adapter_max_steps").set_value(2).run()
    at.button(key="queue_adapters").click().run()
    mine = max(r.id for r in store.list_runs())
    assert store.get(mine).owner not in (None, other.owner_id)
    assert not at.button(key=f"cancel_{mine}").disabled
    at.button(key="queue_adapters").click().run()  # a second one: past this visitor's quota of 1
    assert "the most this server allows each visitor (1)" in at.error[0].value.replace("\\", "")  # shown escaped
    assert len(store.list_runs()) == 2


@pytest.mark.slow
def test_only_the_teacher_deletes_and_nothing_still_needed_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_workspace: Workspace
) -> None:
    import shutil

    from fusionlab.dashboard.widgets import _TEACHER_KEY

    home = Path(shutil.copytree(tiny_workspace.root, tmp_path / "ws"))
    workspace = Workspace(home)
    monkeypatch.setenv("FUSIONLAB_HOME", str(home))
    monkeypatch.setenv("FUSIONLAB_CLASSROOM", "1")
    monkeypatch.setenv("FUSIONLAB_TEACHER_PASSPHRASE", PASSPHRASE)
    student = _page("home.py").run()
    assert not student.exception
    assert not [b for b in student.button if b.key in ("delete_artifact", "prune_versions")]

    teacher = _page("home.py")
    teacher.session_state[_TEACHER_KEY] = True
    teacher.run()
    assert teacher.selectbox(key="delete_choice").options[:2] == ["fusion rte-attention", "fusion rte-weighted"]
    teacher.selectbox(key="delete_choice").set_value(("adapter", "rte")).run()
    teacher.button(key="delete_artifact").click().run()
    shown = teacher.error[0].value.replace("\\", "")  # shown escaped (markdown)
    assert "fused by rte-attention, rte-weighted: delete those fusions first" in shown
    assert "rte" in workspace.list_adapters()

    teacher.selectbox(key="delete_choice").set_value(("fusion", "rte-weighted")).run()
    teacher.button(key="delete_artifact").click().run()
    assert not teacher.exception and "Deleted fusion rte-weighted" in teacher.success[0].value.replace("\\", "")
    assert workspace.list_fusions() == ["rte-attention"]
    assert "rte-weighted" not in json.dumps(
        [d.value for d in teacher.dataframe], default=str
    )  # tables already without it
