"""The Train and Runs pages, run directly with Streamlit's AppTest against private copies of real workspaces.

No worker process is started: ``ensure_worker`` is replaced by a recorder, and a running run is played by this
process (claiming it from the store as a worker would). The finished, failed and cancelled runs the Runs page
shows were executed by a real worker, once per session (see ``test_dashboard_runs.executed_runs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_runs import TINY, ExecutedRuns, executed_runs

from fusionlab import worker
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.train_view import fusion_run_config, queue_fusion_run
from fusionlab.runstore import CANCELLED, QUEUED, RunStore
from fusionlab.workspace import Workspace

PAGES = Path(__file__).resolve().parents[1] / "app_pages"
TIMEOUT_S = 120


@pytest.fixture
def started_workers(monkeypatch: pytest.MonkeyPatch) -> list[Workspace]:
    """Every ``ensure_worker`` call the pages make, recorded instead of spawning a detached worker."""
    calls: list[Workspace] = []
    monkeypatch.setattr(worker, "ensure_worker", lambda workspace, *args, **kwargs: calls.append(workspace))
    return calls


def use_workspace(monkeypatch: pytest.MonkeyPatch, root: Path, data_dir: Path) -> RunStore:
    monkeypatch.setenv("FUSIONLAB_HOME", str(root))
    monkeypatch.setenv("FUSIONLAB_DATA_DIR", str(data_dir))
    return RunStore(Workspace(root).ensure().runs_db)


@pytest.fixture
def train_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_workspace: Workspace, shared_data_dir: Path
) -> RunStore:
    """The run store of a private copy of the tiny workspace (adapters sst2, mnli, boolq, rte; no runs)."""
    return use_workspace(monkeypatch, shutil.copytree(tiny_workspace.root, tmp_path / "ws"), shared_data_dir)


@pytest.fixture
def executed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_workspace: Workspace,
    shared_data_dir: Path,
) -> ExecutedRuns:
    return executed_runs(request, tmp_path_factory, tiny_workspace, shared_data_dir)


@pytest.fixture
def runs_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executed: ExecutedRuns, shared_data_dir: Path
) -> RunStore:
    """The run store of a private copy of the executed workspace."""
    return use_workspace(monkeypatch, executed.copy_to(tmp_path / "ws"), shared_data_dir)


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / name), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:
    """The elements' texts as a reader sees them: user text is sent backslash-escaped (never as markup)."""
    return [re.sub(r"\\(.)", r"\1", element.value) for element in elements]


def chart_titles(at: AppTest) -> list[str]:
    return [title_of(json.loads(chart.proto.spec)) for chart in at.get("plotly_chart")]


# -- Train -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_queue_adapter_runs_from_the_form(train_store: RunStore, started_workers: list[Workspace]) -> None:
    at = page("train.py")
    at.multiselect(key="train_tasks").set_value(["rte", "cb"]).run()
    at.number_input(key="train_adapter_size_cb").set_value(24).run()
    at.number_input(key="adapter_max_steps").set_value(3).run()
    assert (
        "Already trained; the new run makes a new version (fusions keep the version they were trained on): rte"
        in texts(at.caption)
    )
    at.button(key="queue_adapters").click().run()

    assert not at.exception and not at.error
    runs = sorted(train_store.list_runs(status=QUEUED), key=lambda run: run.id)
    assert [run.name for run in runs] == ["rte", "cb"]
    assert runs[1].config["adapter_config"]["adapter_size"] == 24
    assert {run.config["training_config"]["max_steps"] for run in runs} == {3}
    assert texts(at.success) == [f"Queued 2 adapter run(s): #{runs[0].id}, #{runs[1].id}"]
    assert len(started_workers) == 1
    queue_lines = [text for text in texts(at.markdown) if "train_adapter" in text]
    assert queue_lines == [
        f"**1.** `train_adapter` #{runs[0].id} rte (queued)",
        f"**2.** `train_adapter` #{runs[1].id} cb (queued)",
    ]

    reloaded = page("train.py")  # a reload or a second tab: the queue comes from the store
    assert [text for text in texts(reloaded.markdown) if "train_adapter" in text] == queue_lines


@pytest.mark.slow
def test_bad_values_show_an_error_and_queue_nothing(train_store: RunStore, started_workers: list[Workspace]) -> None:
    at = page("train.py")
    at.button(key="queue_adapters").click().run()
    assert texts(at.error) == ["choose at least one task to train an adapter for"]

    at.multiselect(key="train_tasks").set_value(["rte"]).run()
    at.number_input(key="adapter_max_steps").set_value(-5).run()
    at.button(key="queue_adapters").click().run()
    assert not at.exception
    assert texts(at.error) == ["Max steps: must be -1 (use epochs) or a positive integer, got -5"]

    at.number_input(key="adapter_max_steps").set_value(10).run()
    at.number_input(key="adapter_learning_rate").set_value(0.0).run()
    at.button(key="queue_adapters").click().run()
    assert texts(at.error) == ["Learning rate: must be a number in (0, 1], got 0.0"]

    at.number_input(key="fusion_temperature").set_value(0.0).run()
    at.multiselect(key="fusion_adapters").set_value(["rte"]).run()
    at.button(key="queue_fusion").click().run()
    assert texts(at.error) == ["Softmax temperature: must be a number in (0, 100], got 0.0"]
    assert not at.exception
    assert train_store.list_runs() == [] and started_workers == []


@pytest.mark.slow
def test_fusion_over_missing_adapters_shows_an_error(train_store: RunStore, started_workers: list[Workspace]) -> None:
    at = page("train.py")
    assert at.multiselect(key="fusion_adapters").options == ["boolq", "mnli", "rte", "sst2"]
    at.multiselect(key="fusion_adapters").set_value(["rte", "nosuch"]).run()  # typed: new options are allowed
    at.button(key="queue_fusion").click().run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("adapter(s) nosuch are neither trained")
    assert train_store.list_runs() == []

    # A queued adapter counts; once its run is cancelled it no longer does.
    at.multiselect(key="train_tasks").set_value(["cola"]).run()
    at.button(key="queue_adapters").click().run()
    (cola,) = train_store.list_runs()
    at.multiselect(key="fusion_adapters").set_value(["rte", "cola"]).run()
    assert "Queued or running, not yet trained: cola" in texts(at.caption)
    at.button(key=f"cancel_{cola.id}").click().run()
    assert train_store.get(cola.id).status == CANCELLED
    assert not [text for text in texts(at.markdown) if "train_adapter" in text], "the queue no longer lists it"
    at.button(key="queue_fusion").click().run()
    assert at.error[0].value.startswith("adapter(s) cola are neither trained")

    at.multiselect(key="fusion_adapters").set_value(["rte", "sst2"]).run()
    at.selectbox(key="fusion_method").set_value("weighted").run()
    assert "A fusion named rte-weighted exists; this run replaces it when it ends." in texts(at.caption)
    at.button(key="queue_fusion").click().run()
    assert not at.error
    (fusion,) = train_store.list_runs(status=QUEUED)
    assert (fusion.name, fusion.config["fusion_config"]["fusion_method"]) == ("rte-weighted", "weighted")
    assert texts(at.success) == [f"Queued fusion run #{fusion.id}"]
    assert f"**1.** `train_fusion` #{fusion.id} rte-weighted (queued)" in texts(at.markdown)


@pytest.mark.slow
def test_live_section_follows_and_cancels_a_running_fusion(
    train_store: RunStore, started_workers: list[Workspace]
) -> None:
    workspace = Workspace(train_store.path.parent)
    fusion_id = queue_fusion_run(train_store, workspace, fusion_run_config("rte", ["rte", "sst2"], limits=TINY))
    waiting_id = queue_fusion_run(train_store, workspace, fusion_run_config("rte", ["sst2", "rte"], limits=TINY))
    assert train_store.claim_next(os.getpid(), "cpu").id == fusion_id  # this process plays the worker
    train_store.set_progress(fusion_id, 0.5, "step 1/2")
    train_store.log_metrics(fusion_id, 1, {"loss": 0.69, "eval_accuracy": 0.5})
    for step, share in ((1, 0.5), (2, 0.9)):
        train_store.add_snapshot(
            fusion_id, step, {"adapter_names": ["rte", "sst2"], "layers": [[share, 1 - share]] * 6}
        )

    at = page("train.py")

    (progress,) = at.get("progress")
    assert (progress.value, progress.text) == (50, "step 1/2")
    assert f"**1.** `train_fusion` #{waiting_id} rte-attention (queued)" in texts(at.markdown)
    assert chart_titles(at) == [
        "Training loss",
        "Selection-split accuracy by training step",
        "Fusion weights per layer at step 2",
    ]

    at.toggle(key="live_follow").set_value(False).run()
    at.select_slider(key="live_step").set_value(1).run()
    assert chart_titles(at)[-1] == "Fusion weights per layer at step 1"

    at.button(key=f"cancel_{fusion_id}").click().run()
    assert train_store.get(fusion_id).cancel_requested
    assert at.button(key=f"cancel_{fusion_id}").disabled
    assert at.get("progress")[0].text == "cancel requested: stopping at the next step"


# -- Runs --------------------------------------------------------------------------------------------------
def test_runs_page_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data_dir: Path) -> None:
    use_workspace(monkeypatch, tmp_path / "empty", shared_data_dir)
    at = page("runs.py")
    assert texts(at.info)[0].startswith("No runs yet")
    assert not at.dataframe


@pytest.mark.slow
def test_runs_page_lists_compares_and_diffs_runs(runs_store: RunStore, executed: ExecutedRuns) -> None:
    at = page("runs.py")

    history = at.dataframe[0].value
    assert history["id"].tolist() == [run.id for run in runs_store.list_runs()]
    at.multiselect(key="runs_statuses").set_value(["failed"]).run()
    assert at.dataframe[0].value["id"].tolist() == [executed.failed_id]
    at.text_input(key="runs_text").input("nothing like this").run()
    assert at.dataframe[0].value.empty and texts(at.caption)[0] == "0 of 4 runs"
    linked = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT_S)
    linked.query_params["runs_statuses"] = "failed"  # a copied link with a filter shows the same rows
    linked.run()
    assert linked.dataframe[0].value["id"].tolist() == [executed.failed_id]
    at.text_input(key="runs_text").input("").run()

    assert at.multiselect(key="runs_overlaid").value == [executed.fusion_id]  # one task on the dev axis
    at.multiselect(key="runs_overlaid").set_value([executed.fusion_id, executed.adapter_id]).run()
    titles = chart_titles(at)
    assert titles[:2] == ["Training loss", "Selection-split accuracy by training step"]
    assert at.selectbox(key="runs_dev_metric").format_func("eval_accuracy") == "selection-split accuracy"

    at.selectbox(key="runs_diff_a").set_value(executed.adapter_id).run()
    at.selectbox(key="runs_diff_b").set_value(executed.fusion_id).run()
    diff = at.dataframe[1].value
    assert {"kind", "adapters", "training_config.max_steps"} <= set(diff["key"])
    at.toggle(key="runs_diff_only").set_value(True).run()
    only = at.dataframe[1].value
    assert "kind" in set(only["key"]) and "training_config.max_steps" not in set(only["key"])
    assert not at.exception


@pytest.mark.slow
def test_runs_page_shows_a_finished_fusion(runs_store: RunStore, executed: ExecutedRuns) -> None:
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=TIMEOUT_S)
    at.query_params["run"] = str(executed.fusion_id)  # a copied link to the run
    at.run()

    assert not at.exception and not at.error
    assert at.selectbox(key="runs_detail").value == executed.fusion_id
    assert [metric.label for metric in at.metric] == ["dev accuracy"]
    titles = chart_titles(at)
    assert "Dev confusion matrix of rte-attention" in titles
    assert "Mean fusion weight on the dev set" in titles
    assert "How rte-attention's fusion weights moved while it trained" in titles  # the trajectory, one click
    assert any(t.startswith("Fusion weights at step") for t in titles)  # and its replay
    classes = at.selectbox(key="runs_stats_class").options
    assert classes[0] == "all dev examples" and len(classes) >= 2
    at.selectbox(key="runs_stats_class").set_value(classes[1]).run()
    assert f"Mean fusion weight on the dev set, gold class {classes[1]}" in chart_titles(at)
    (download,) = at.get("download_button")
    assert download.label.startswith("Download run (zip: run.json + the checkpoint and every adapter it needs")


@pytest.mark.slow
def test_runs_page_shows_why_a_run_failed(runs_store: RunStore, executed: ExecutedRuns) -> None:
    at = page("runs.py")
    at.selectbox(key="runs_detail").set_value(executed.failed_id).run()

    assert not at.exception
    assert texts(at.error) == ["ValueError: TrainingConfig.learning_rate: must be a number in (0, 1], got -1"]
    assert at.expander[0].label == "Full error (for debugging)"
    assert "Traceback" in at.code[0].value
    assert at.get("download_button")[0].label == "Download run (zip: run.json)"
