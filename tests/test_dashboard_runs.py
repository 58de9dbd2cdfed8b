"""The Train and Runs pages' logic on a real run store: queuing, the live queue view, the run history, curves,
config diffs, fusion statistics, artifact zips and the charts drawn from them.

The runs shown on the Runs page are real: :func:`executed_runs` queues a tiny adapter run, a tiny fusion run
that depends on it, a run with a bad config and a cancelled run, and lets an in-process worker execute them
(once per session; the page tests in ``test_app_train_runs.py`` reuse them).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionlab.config import AdapterConfig, ModelConfig, TrainingConfig
from fusionlab.dashboard.charts import title_of
from fusionlab.dashboard.colors import adapter_color
from fusionlab.dashboard.run_charts import (
    KEPT_LABEL,
    confusion_chart,
    curves_chart,
    fusion_heatmap,
    fusion_weight_bars,
    step_axis,
    trajectory_chart,
)
from fusionlab.dashboard.runs_view import (
    ABSENT,
    DIFF_HIGHLIGHT,
    HISTORY_COLUMNS,
    ArtifactsUnavailableError,
    archive_name,
    artifact_zip,
    config_diff,
    confusion,
    curve_marks,
    curves,
    default_overlay,
    dev_metric_names,
    filter_history,
    flatten,
    fusion_stats,
    highlight_differences,
    history_display,
    history_frame,
    metric_names,
    requested_index,
    run_result,
    score_tiles,
    snapshots_by_step,
    weight_trajectory,
    weights_frame,
)
from fusionlab.dashboard.train_view import (
    STALL_AFTER_S,
    Limits,
    MissingAdaptersError,
    QueueView,
    adapter_non_linearities,
    adapter_run_config,
    available_adapters,
    fusion_run_config,
    queue_adapter_runs,
    queue_fusion_run,
)
from fusionlab.data import get_task
from fusionlab.metrics import compute_metrics, majority_baseline
from fusionlab.runspec import TRAIN_ADAPTER, TRAIN_FUSION, AdapterRun, FusionRun, RunResult
from fusionlab.runstore import CANCELLED, FAILED, FINISHED, QUEUED, RunStore
from fusionlab.uncertainty import score_interval
from fusionlab.worker import run_worker
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

TINY = Limits(
    steps=2,
    max_train_samples=16,
    max_eval_samples=16,
    max_length=32,
    batch_size=4,
    eval_steps=1,
    snapshot_steps=1,
)
"""Two steps on sixteen examples: a real run in seconds, with a loss, two dev evaluations and snapshots."""


@dataclasses.dataclass(frozen=True)
class ExecutedRuns:
    """A workspace whose run store holds runs a real worker executed (to be read, never modified)."""

    root: Path
    adapter_id: int
    fusion_id: int
    failed_id: int
    cancelled_id: int

    @property
    def store(self) -> RunStore:
        return RunStore(self.root / "runs.sqlite")

    def copy_to(self, destination: Path) -> Path:
        """A private copy to modify (its runs' recorded checkpoints still point into the original)."""
        shutil.copytree(self.root, destination)
        return destination


_EXECUTED = pytest.StashKey[ExecutedRuns]()


def executed_runs(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_workspace: Workspace,
    data_dir: Path,
) -> ExecutedRuns:
    """Build the executed workspace once per test session (kept in the session's stash, so both dashboard
    test modules share it): a copy of ``tiny_workspace`` plus

    * a finished ``train_adapter`` run for CB (a new adapter),
    * a finished attention ``train_fusion`` run for RTE over ``rte`` and ``cb``, queued while ``cb`` was only
      queued, so it also proves the worker's queue order makes such a fusion work,
    * a failed run (a bad learning rate that bypassed the form, as a hand-written CLI config could),
    * a queued run cancelled before it started.
    """
    stash = request.config.stash
    if _EXECUTED not in stash:
        root = tmp_path_factory.mktemp("executed") / "ws"
        shutil.copytree(tiny_workspace.root, root)
        workspace = Workspace(root)
        store = RunStore(workspace.runs_db)
        (adapter_id,) = queue_adapter_runs(store, ["cb"], {"cb": 8}, "relu", TINY, str(data_dir))
        fusion_id = queue_fusion_run(
            store, workspace, fusion_run_config("rte", ["rte", "cb"], limits=TINY, data_dir=str(data_dir))
        )
        failed_id = store.enqueue(TRAIN_ADAPTER, "broken", {"task": "rte", "training_config": {"learning_rate": -1}})
        (cancelled_id,) = queue_adapter_runs(store, ["sst2"], {}, "relu", TINY, str(data_dir))
        store.request_cancel(cancelled_id)
        assert run_worker(workspace, idle_exit_seconds=0) == 3
        stash[_EXECUTED] = ExecutedRuns(root, adapter_id, fusion_id, failed_id, cancelled_id)
    return stash[_EXECUTED]


@pytest.fixture
def executed(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tiny_workspace: Workspace,
    shared_data_dir: Path,
) -> ExecutedRuns:
    return executed_runs(request, tmp_path_factory, tiny_workspace, shared_data_dir)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs.sqlite")


@pytest.fixture
def workspace(tmp_path: Path, tiny_workspace: Workspace) -> Workspace:
    """A private copy of the tiny workspace: adapters sst2, mnli, boolq, rte and no runs."""
    return Workspace(shutil.copytree(tiny_workspace.root, tmp_path / "ws"))


# -- building configs --------------------------------------------------------------------------------------
def test_adapter_config_holds_the_full_validated_configs() -> None:
    config = adapter_run_config("rte", 32, "gelu", TINY, "/data")

    assert config.task == config.name == "rte"
    assert config.data_dir == "/data"
    assert config.adapter_config == AdapterConfig(adapter_size=32, task_name="rte", non_linearity="gelu")
    training = config.training_config
    assert (training.max_steps, training.max_train_samples, training.eval_steps) == (2, 16, 1)
    assert training.logging_steps == 1, "a two-step run must still log its loss"
    assert config.model_config.max_length == 32
    stored = json.loads(json.dumps(config.to_dict()))  # what the run store stores
    assert AdapterRun.from_dict(stored) == config
    assert TrainingConfig.from_dict(stored["training_config"]) == training
    assert ModelConfig.from_dict(stored["model_config"]) == config.model_config


def test_fusion_config_names_itself_like_the_cli() -> None:
    config = fusion_run_config("rte", ["rte", "sst2"], method="weighted", temperature=2.0, limits=TINY)

    assert config.name == "rte-weighted"
    assert config.adapters == config.fusion_config.adapter_names == ["rte", "sst2"]
    assert config.fusion_config.fusion_method == "weighted"
    assert config.fusion_config.temperature == 2.0
    assert fusion_run_config("rte", ["rte", "sst2"], name="  mine ").name == "mine"
    assert FusionRun.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: adapter_run_config("rte", 0, "relu", TINY, None), "AdapterConfig.adapter_size"),
        (lambda: adapter_run_config("rte", 8, "sigmoid", TINY, None), "AdapterConfig.non_linearity"),
        (lambda: adapter_run_config("nosuch", 8, "relu", TINY, None), "Unknown task 'nosuch'"),
        (lambda: adapter_run_config("rte", 8, "relu", Limits(steps=0), None), "TrainingConfig.max_steps"),
        (lambda: adapter_run_config("rte", 8, "relu", Limits(learning_rate=0.0), None), "TrainingConfig.learning_rate"),
        (lambda: adapter_run_config("rte", 8, "relu", Limits(batch_size=-4), None), "per_device_train_batch_size"),
        (lambda: adapter_run_config("rte", 8, "relu", Limits(max_length=0), None), "ModelConfig.max_length"),
        (lambda: fusion_run_config("rte", []), "FusionConfig.adapter_names"),
        (lambda: fusion_run_config("rte", ["rte", "rte"]), "FusionConfig.adapter_names"),
        (lambda: fusion_run_config("rte", ["rte", "sst2"], method="sum"), "FusionConfig.fusion_method"),
        (lambda: fusion_run_config("rte", ["rte", "sst2"], temperature=0.0), "FusionConfig.temperature"),
        (lambda: fusion_run_config("rte", ["rte", "sst2"], heads=0), "FusionConfig.num_attention_heads"),
        (
            lambda: fusion_run_config("rte", ["rte", "sst2"], value_regularization=-1.0),
            "FusionConfig.value_regularization",
        ),
    ],
)
def test_bad_values_raise_the_configs_value_error(build, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_limits_from_form_read_zero_as_unset_and_pass_the_rest_on() -> None:
    limits = Limits.from_form(
        max_steps=5,
        max_train_samples=0,
        max_eval_samples=10,
        max_length=64,
        batch_size=8,
        learning_rate=1e-3,
        eval_steps=0,
        snapshot_steps=0,
    )
    assert (limits.max_train_samples, limits.eval_steps, limits.snapshot_steps) == (None, None, None)
    assert limits.max_eval_samples == 10
    with pytest.raises(ValueError, match=r"TrainingConfig\.max_train_samples"):
        dataclasses.replace(limits, max_train_samples=-1).training_config()


# -- queuing -----------------------------------------------------------------------------------------------
def test_a_bad_task_queues_none_of_the_selection(store: RunStore) -> None:
    with pytest.raises(ValueError, match="nosuch"):
        queue_adapter_runs(store, ["rte", "nosuch"], {}, "relu", TINY, None)
    with pytest.raises(ValueError, match="at least one task"):
        queue_adapter_runs(store, [], {}, "relu", TINY, None)
    assert store.list_runs() == []


def test_queue_positions_follow_the_store(store: RunStore, tmp_path: Path) -> None:
    ids = queue_adapter_runs(store, ["rte", "cb", "sst2"], {"cb": 16}, "relu", TINY, None)
    assert [store.get(i).name for i in ids] == ["rte", "cb", "sst2"]
    assert store.get(ids[1]).config["adapter_config"]["adapter_size"] == 16
    assert store.get(ids[0]).config["adapter_config"]["adapter_size"] == AdapterConfig.adapter_size
    store.request_cancel(ids[1])

    view = QueueView.load(store, Workspace(tmp_path / "ws"))

    assert [(item.run.id, item.position) for item in view.queued] == [(ids[0], 1), (ids[2], 2)]
    assert [store.queue_position(item.run.id) for item in view.queued] == [1, 2]
    assert view.active is None and view.metrics.empty and view.snapshots == []
    assert view.last_ended is not None and view.last_ended.status == CANCELLED
    assert not view.stalled(), "just queued: the worker is still starting, no false alarm"
    oldest = min(item.run.created_at for item in view.queued)
    assert view.stalled(now=oldest + STALL_AFTER_S + 1), "runs have waited and no worker serves them"
    assert view.progress == (0.0, "idle")


def test_queue_view_follows_a_running_fusion(store: RunStore, workspace: Workspace) -> None:
    fusion_id = queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "sst2"], limits=TINY))
    assert store.claim_next(os.getpid(), "cpu").id == fusion_id  # this process plays the worker
    store.set_progress(fusion_id, 0.5, "step 1/2")
    store.log_metrics(fusion_id, 1, {"loss": 0.7, "eval_accuracy": 0.5})
    for step, first in ((1, 0.5), (2, 0.8)):
        store.add_snapshot(fusion_id, step, {"adapter_names": ["rte", "sst2"], "layers": [[first, 1 - first]] * 6})

    view = QueueView.load(store, workspace)

    assert view.active is not None and view.active.id == fusion_id
    assert view.progress == (0.5, "step 1/2")
    assert set(view.metrics["name"]) == {"loss", "eval_accuracy"}
    assert view.latest_snapshot is not None and view.latest_snapshot.step == 2
    assert not view.stalled() and view.queued == []
    store.request_cancel(fusion_id)
    assert QueueView.load(store, workspace).progress[1].startswith("cancel requested")


def test_a_fusion_needs_its_adapters_trained_or_queued(store: RunStore, workspace: Workspace) -> None:
    assert available_adapters(workspace, store) == ["boolq", "mnli", "rte", "sst2"]
    with pytest.raises(MissingAdaptersError, match="cola") as caught:
        queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "cola"], limits=TINY))
    assert caught.value.missing == ["cola"]
    assert store.list_runs() == []

    (cola_run,) = queue_adapter_runs(store, ["cola"], {}, "relu", TINY, None)
    assert "cola" in available_adapters(workspace, store)
    fusion_id = queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "cola"], limits=TINY))
    assert store.get(fusion_id).kind == TRAIN_FUSION

    store.request_cancel(cola_run)
    with pytest.raises(MissingAdaptersError):
        queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "cola"], limits=TINY))
    with pytest.raises(ValueError, match=r"FusionRun.name: .*may hold only letters"):
        queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "sst2"], name="../escape"))
    assert [run.id for run in store.list_runs(status=QUEUED)] == [fusion_id]


def test_a_fusion_needs_adapters_of_one_non_linearity(store: RunStore, workspace: Workspace) -> None:
    """Fusion runs the adapters of a layer as one batched module, so mixing activations fails in the worker;
    the queue refuses it up front, judging a queued adapter by its run (which replaces the checkpoint)."""
    queue_adapter_runs(store, ["cola"], {}, "gelu", TINY, None)
    assert adapter_non_linearities(workspace, store, ["rte", "cola", "nosuch"]) == {"rte": "relu", "cola": "gelu"}
    with pytest.raises(ValueError, match="must share one non-linearity, but rte uses relu, cola uses gelu"):
        queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "cola"], limits=TINY))

    queue_adapter_runs(store, ["rte"], {}, "gelu", TINY, None)  # retrains rte with gelu before the fusion runs
    assert adapter_non_linearities(workspace, store, ["rte", "cola"]) == {"rte": "gelu", "cola": "gelu"}
    fusion_id = queue_fusion_run(store, workspace, fusion_run_config("rte", ["rte", "cola"], limits=TINY))
    assert store.get(fusion_id).status == QUEUED


def test_two_sessions_queuing_at_once_lose_and_duplicate_nothing(store: RunStore) -> None:
    """Streamlit serves each browser tab from its own thread: two tabs queuing at once must each get every run
    they asked for, exactly once. Each call is marked by its max_train_samples to find it again."""
    calls_per_session = 15
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    returned: list[int] = []
    lock = threading.Lock()

    def session(number: int) -> None:
        try:
            barrier.wait()
            for call in range(calls_per_session):
                marker = Limits(steps=2, max_train_samples=1000 * number + call + 1)
                ids = queue_adapter_runs(store, ["rte", "cb"], {}, "relu", marker, None)
                with lock:
                    returned.extend(ids)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=session, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    runs = store.list_runs()
    assert len(runs) == len(returned) == len(set(returned)) == 2 * calls_per_session * 2
    assert sorted(run.id for run in runs) == sorted(returned)
    markers = sorted((run.config["training_config"]["max_train_samples"], run.name) for run in runs)
    expected = sorted(
        (1000 * n + c + 1, task) for n in (1, 2) for c in range(calls_per_session) for task in ("rte", "cb")
    )
    assert markers == expected
    positions = [item.position for item in QueueView.load(store, Workspace(store.path.parent / "ws")).queued]
    assert positions == list(range(1, len(runs) + 1))


def test_runs_view_helpers_on_an_empty_choice() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}
    assert dev_metric_names(["loss", "eval_accuracy", "eval_f1", "learning_rate"]) == ["eval_accuracy", "eval_f1"]
    assert requested_index([], None) == 0
    assert default_overlay([]) == []
    assert weights_frame([], ["a"]).empty


def _mrpc_result(predictions: list[int], gold: list[int], with_interval: bool = True) -> RunResult:
    """A finished MRPC adapter run's result on these dev predictions, scored as the worker scores them."""
    task = get_task("mrpc")
    return RunResult(
        kind="adapter",
        name="mrpc",
        task="mrpc",
        checkpoint="ckpt",
        main_metric="f1",
        metrics=compute_metrics(task, np.array(predictions), np.array(gold)),
        majority_baseline=majority_baseline(gold, task),
        score_interval=score_interval(predictions, gold, "f1") if with_interval else None,
    )


def test_score_tiles_colour_a_difference_from_the_majority_only_beyond_its_interval() -> None:
    gold = [1] * 280 + [0] * 128  # MRPC's dev balance: "equivalent" for every pair scores F1 0.81
    noise = _mrpc_result([1] * 280 + [0] * 10 + [1] * 118, gold)  # the majority class, and 10 of the others
    f1, accuracy = (next(t for t in score_tiles(noise) if t.metric == m) for m in ("f1", "accuracy"))
    assert f1.value == f"{noise.metrics['f1']:.3f}" and noise.metrics["f1"] > noise.majority_baseline["f1"]
    assert noise.score_interval.low <= noise.majority_baseline["f1"]
    assert not f1.ranked and f1.delta.endswith("vs majority class (within noise)")
    assert not accuracy.ranked and accuracy.delta.endswith("vs majority class (no interval: not ranked)")
    assert [t.metric for t in score_tiles(noise)] == list(noise.metrics)

    learned = _mrpc_result(gold[:380] + [1 - g for g in gold[380:]], gold)  # 380 of 408 right
    f1 = next(t for t in score_tiles(learned) if t.metric == "f1")
    assert learned.score_interval.low > learned.majority_baseline["f1"]
    delta = learned.metrics["f1"] - learned.majority_baseline["f1"]
    assert f1.ranked and f1.delta == f"{delta:+.3f} vs majority class"

    wrong = next(t for t in score_tiles(_mrpc_result([1 - g for g in gold], gold)) if t.metric == "f1")
    assert wrong.ranked and wrong.delta.startswith("-")  # wholly below the majority class: a loss, shown

    bare = _mrpc_result(gold[:380] + [1 - g for g in gold[380:]], gold, with_interval=False)
    f1 = next(t for t in score_tiles(bare) if t.metric == "f1")
    assert not f1.ranked and f1.delta.endswith("(no interval: not ranked)")


# -- the executed runs -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_worker_executed_the_queued_runs(executed: ExecutedRuns) -> None:
    store = executed.store
    adapter, fusion = store.get(executed.adapter_id), store.get(executed.fusion_id)
    assert (adapter.status, fusion.status) == (FINISHED, FINISHED)
    assert store.get(executed.failed_id).status == FAILED
    assert store.get(executed.cancelled_id).status == CANCELLED
    assert "cb" in Workspace(executed.root).list_adapters()
    assert fusion.final_metrics["fusion_stats"]["adapter_names"] == ["rte", "cb"]
    assert len(store.snapshots(fusion.id)) >= 2


@pytest.mark.slow
def test_history_frame_and_filters(executed: ExecutedRuns) -> None:
    store = executed.store
    frame = history_frame(store.list_runs())

    assert list(frame.columns) == HISTORY_COLUMNS
    assert frame["id"].tolist() == sorted(frame["id"], reverse=True), "newest first, as the store lists them"
    rows = frame.set_index("id")
    fusion = store.get(executed.fusion_id)
    assert rows.loc[executed.fusion_id, "task"] == "rte"
    assert rows.loc[executed.fusion_id, "metric"] == "accuracy"
    assert rows.loc[executed.fusion_id, "score"] == pytest.approx(fusion.final_metrics["metrics"]["accuracy"])
    result = run_result(fusion)  # the score's interval, and the fusion's paired difference from its own adapter
    n = result.score_interval.examples
    assert n == TINY.max_eval_samples
    assert rows.loc[executed.fusion_id, "interval"] == f"{result.score_interval.bounds_text()} (n={n})"
    assert rows.loc[executed.fusion_id, "vs_own_adapter"] == result.own_adapter_difference.text()
    assert re.search(rf"\(n={n}, (better|worse|within noise)\)$", rows.loc[executed.fusion_id, "vs_own_adapter"])
    assert rows.loc[executed.adapter_id, "interval"].endswith(f"(n={n})")
    assert rows.loc[executed.adapter_id, "vs_own_adapter"] == "", "an adapter has no own adapter: empty, not None"
    assert rows.loc[executed.adapter_id, "duration_s"] > 0
    assert rows.loc[executed.failed_id, "error"] == (
        "ValueError: TrainingConfig.learning_rate: must be a number in (0, 1], got -1"
    )
    assert frame["started"].isna().sum() >= 1, "the cancelled run never started"
    assert rows.loc[executed.fusion_id, "error"] == "", "an empty cell, never the word None"
    shown = history_display(frame).set_index("id")  # what the page shows: text, empty where there is no value
    cancelled = frame.set_index("id")["started"].isna()
    assert (shown.loc[cancelled, ["started", "duration_s", "score"]] == "").all().all()  # (it ended: cancelled)
    assert shown.loc[executed.fusion_id, "score"] == f"{rows.loc[executed.fusion_id, 'score']:.3f}"
    assert re.fullmatch(r"\d+:\d\d:\d\d", shown.loc[executed.adapter_id, "duration_s"])
    assert not shown.isna().any().any()

    assert filter_history(frame, kinds=[TRAIN_FUSION])["id"].tolist() == [executed.fusion_id]
    assert filter_history(frame, statuses=[FAILED])["id"].tolist() == [executed.failed_id]
    assert set(filter_history(frame, tasks=["cb"])["id"]) == {executed.adapter_id}
    assert filter_history(frame, text="RTE-ATT")["id"].tolist() == [executed.fusion_id]
    assert filter_history(frame, text="rte.attention").empty, "a plain substring, not a regular expression"
    assert len(filter_history(frame)) == len(frame)


@pytest.mark.slow
def test_curves_of_several_runs(executed: ExecutedRuns) -> None:
    store = executed.store
    ids = [executed.adapter_id, executed.fusion_id]

    loss = curves(store, ids, "loss")
    assert set(loss["run_id"]) == set(ids)
    assert loss["run"].nunique() == 2
    assert (loss["step"] >= 1).all()
    assert "eval_accuracy" in dev_metric_names(metric_names(store, ids))
    dev = curves(store, [*ids, executed.failed_id], "eval_accuracy")
    assert set(dev["run_id"]) == set(ids), "a run that logged nothing adds no rows"
    assert curves(store, ids, "no_such_metric").empty
    # by default one task's runs only: the cb adapter's dev accuracy would share an axis with rte's
    assert default_overlay(store.list_runs()) == [executed.fusion_id]


@pytest.mark.slow
def test_config_diff_flattens_and_marks_differences(executed: ExecutedRuns) -> None:
    store = executed.store
    adapter, fusion = store.get(executed.adapter_id), store.get(executed.fusion_id)

    diff = config_diff(adapter, fusion).set_index("key")

    assert diff.loc["kind", "differs"] and diff.loc["kind", "A"] == '"train_adapter"'
    assert diff.loc["training_config.max_steps", "A"] == "2"
    assert not diff.loc["training_config.max_steps", "differs"]
    assert diff.loc["adapter_config.adapter_size", "B"] == ABSENT
    assert diff.loc["fusion_config.fusion_method", "B"] == '"attention"'
    assert diff.loc["adapters", "B"] == '["rte", "cb"]'
    assert not config_diff(fusion, fusion)["differs"].any()

    styled = config_diff(adapter, fusion)
    html = highlight_differences(styled).to_html()
    assert html.count(DIFF_HIGHLIGHT.split(": ")[1]) > 0
    assert int(styled["differs"].sum()) < len(styled)


@pytest.mark.slow
def test_fusion_stats_and_confusion_of_a_finished_fusion(executed: ExecutedRuns) -> None:
    store = executed.store
    fusion = store.get(executed.fusion_id)

    stats = fusion_stats(fusion)
    assert stats is not None
    frame = stats.frame()
    assert list(frame.columns) == ["rte", "cb"]
    assert list(frame.index) == [f"layer {i}" for i in range(1, 7)]
    assert frame.sum(axis=1).to_numpy() == pytest.approx(1.0, abs=1e-4)
    assert set(stats.classes) <= {"entailment", "not_entailment"} and stats.classes
    assert stats.frame(stats.classes[0]).shape == (6, 2)
    with pytest.raises(ValueError, match="no fusion statistics for class"):
        stats.frame("maybe")
    assert fusion_stats(store.get(executed.adapter_id)) is None

    matrix, labels = confusion(fusion)
    assert labels == ["entailment", "not_entailment"]
    assert sum(map(sum, matrix)) == 16
    assert confusion(store.get(executed.failed_id)) is None


@pytest.mark.slow
def test_artifact_zip_holds_the_checkpoint_and_the_run_record(executed: ExecutedRuns, tmp_path: Path) -> None:
    store = executed.store
    fusion = store.get(executed.fusion_id)
    top = archive_name(fusion)

    with zipfile.ZipFile(io.BytesIO(artifact_zip(store, fusion))) as archive:
        names = set(archive.namelist())
        record = json.loads(archive.read(f"{top}/run.json"))
    assert top == f"run-{fusion.id}-rte-attention"
    assert {
        f"{top}/fusions/rte-attention/{CHECKPOINT_MARKER}",
        f"{top}/fusions/rte-attention/fusion.safetensors",
    } <= names
    assert {f"{top}/adapters/rte/adapter.safetensors", f"{top}/adapters/cb/adapter.safetensors"} <= names
    # the zip works on its own: the fusion loads from it alone and predicts what it predicts in the workspace
    with zipfile.ZipFile(io.BytesIO(artifact_zip(store, fusion))) as archive:
        archive.extractall(tmp_path)
    from fusionlab import FusionModel
    from tests.test_model import batch

    ids, mask = batch()
    unzipped = FusionModel.from_pretrained(tmp_path / top / "fusions" / "rte-attention").eval()
    original = FusionModel.from_pretrained(executed.root / "fusions" / "rte-attention").eval()
    with torch.no_grad():
        expected = original(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(unzipped(input_ids=ids, attention_mask=mask).logits, expected, rtol=0, atol=0)
    assert record["config"] == fusion.config
    assert record["final_metrics"] == fusion.final_metrics
    assert {row["name"] for row in record["history"]} >= {"loss", "eval_accuracy"}
    assert len(record["snapshots"]) == len(store.snapshots(fusion.id))

    failed = store.get(executed.failed_id)
    with zipfile.ZipFile(io.BytesIO(artifact_zip(store, failed))) as archive:
        assert archive.namelist() == [f"{archive_name(failed)}/run.json"]
        assert json.loads(archive.read(archive.namelist()[0]))["error"].startswith("ValueError")


@pytest.mark.slow
def test_artifact_zip_refuses_a_checkpoint_that_is_gone_or_replaced(executed: ExecutedRuns, tmp_path: Path) -> None:
    store = executed.store
    adapter = store.get(executed.adapter_id)

    gone = dataclasses.replace(adapter, artifacts={**adapter.artifacts, "checkpoint": str(tmp_path / "deleted")})
    with pytest.raises(ArtifactsUnavailableError, match="is gone"):
        artifact_zip(store, gone)

    replaced_dir = shutil.copytree(adapter.artifacts["checkpoint"], tmp_path / "cb")
    later = time.time() + 60
    os.utime(replaced_dir / CHECKPOINT_MARKER, (later, later))  # as if a later "cb" run had written it
    replaced = dataclasses.replace(adapter, artifacts={**adapter.artifacts, "checkpoint": str(replaced_dir)})
    with pytest.raises(ArtifactsUnavailableError, match="overwritten"):
        artifact_zip(store, replaced)


# -- charts ------------------------------------------------------------------------------------------------
def _titles(fig) -> tuple[str, str, str]:
    return title_of(fig), fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


@pytest.mark.slow
def test_run_charts_are_titled_and_never_empty(executed: ExecutedRuns) -> None:
    store = executed.store
    ids = [executed.adapter_id, executed.fusion_id]

    loss = curves_chart(curves(store, ids, "loss"), "loss")
    assert _titles(loss) == ("Loss by training step", "step", "loss")
    assert len(loss.data) == 2 and loss.data[0].line.color != loss.data[1].line.color
    assert loss.layout.showlegend
    dev = curves_chart(curves(store, ids, "eval_accuracy"), "eval_accuracy", "Selection accuracy")
    assert _titles(dev) == ("Selection accuracy", "step", "selection-split accuracy")
    # whole training steps from 0, even when a curve has a single point
    assert (dev.layout.xaxis.range[0], dev.layout.xaxis.dtick, dev.layout.xaxis.tickformat) == (0, 1, "d")
    assert dev.layout.yaxis.range[0] == 0 and 1 <= dev.layout.yaxis.range[1] <= 1.05  # accuracy on its own 0-1
    assert loss.layout.yaxis.range[0] == 0  # a loss from 0: no magnified wobble

    stats = fusion_stats(store.get(executed.fusion_id))
    heatmap = fusion_heatmap(stats.frame(), "Mean fusion weight")
    assert _titles(heatmap) == ("Mean fusion weight", "adapter", "transformer layer")
    assert heatmap.data[0].colorbar.title.text == "fusion weight"  # one scale, one title, on every page
    rte_tick, cb_tick = heatmap.layout.xaxis.ticktext
    assert "rte" in rte_tick and adapter_color("rte") in rte_tick
    assert "cb" in cb_tick and adapter_color("cb") in cb_tick
    assert list(heatmap.data[0].y) == [f"layer {i}" for i in range(1, 7)]

    snapshot = store.snapshots(executed.fusion_id)[-1]
    bars = fusion_weight_bars(weights_frame(snapshot.payload["layers"], snapshot.payload["adapter_names"]), "Now")
    assert _titles(bars) == ("Now", "transformer layer", "mean softmax weight (gridlines: 1/N each)")
    assert list(bars.layout.yaxis.tickvals) == [0, 0.5, 1] and list(bars.layout.yaxis.ticktext) == ["0", "1/2", "1"]
    assert "vs the even share 1/N = 0.500" in bars.data[0].hovertext[0]
    assert [(trace.name, trace.marker.color) for trace in bars.data] == [
        ("rte", adapter_color("rte")),
        ("cb", adapter_color("cb")),
    ]

    matrix, labels = confusion(store.get(executed.fusion_id))
    cm = confusion_chart(matrix, labels, "Confusion")
    assert _titles(cm) == ("Confusion", "predicted label", "gold label")
    assert list(cm.data[0].x) == list(cm.data[0].y) == labels
    assert cm.data[0].texttemplate == "%{z}"

    empty_curves = curves(store, ids, "no_such_metric")
    assert curves_chart(empty_curves, "no_such_metric") is None
    assert fusion_heatmap(weights_frame([], []), "x") is None
    assert fusion_weight_bars(weights_frame([], []), "x") is None
    assert confusion_chart([], [], "x") is None


@pytest.mark.slow
def test_a_real_runs_curves_show_chance_and_the_kept_step(executed: ExecutedRuns) -> None:
    store = executed.store
    run = store.get(executed.fusion_id)
    result = run_result(run)
    marks = curve_marks(run)
    assert (marks.best_step, marks.majority, marks.num_labels) == (result.best_step, result.majority_baseline, 2)

    loss = curves_chart(curves(store, [run.id], "loss"), "loss", "Training loss", [marks])
    [chance] = [trace for trace in loss.data if trace.meta == "chance"]
    assert chance.y[0] == pytest.approx(math.log(2))  # RTE: two labels
    assert loss.layout.yaxis.range[0] == 0 and loss.layout.yaxis.range[1] >= math.log(2)
    dev = curves_chart(curves(store, [run.id], "eval_accuracy"), "eval_accuracy", marks=[marks])
    [majority] = [trace for trace in dev.data if trace.meta == "chance"]
    assert majority.y[0] == result.majority_baseline["accuracy"]
    [kept] = [trace for trace in dev.data if trace.meta == "kept"]
    assert kept.x[0] == result.best_step and KEPT_LABEL in kept.name


def test_a_run_claimed_while_the_queue_is_read_is_shown_once(
    store: RunStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker claiming the next run between the page's two reads once drew its Cancel button twice, under
    one widget key, and the Train page failed (StreamlitDuplicateElementKey, seen in the browser test)."""
    ids = queue_adapter_runs(store, ["rte", "cb"], {}, "relu", TINY, None)
    list_runs = store.list_runs

    def list_then_claim(*args, **kwargs):
        runs = list_runs(*args, **kwargs)
        store.claim_next(os.getpid(), "cpu")  # the worker, right between the two reads
        return runs

    monkeypatch.setattr(store, "list_runs", list_then_claim)
    view = QueueView.load(store, Workspace(tmp_path / "ws"))
    assert view.active is not None and view.active.id == ids[0]
    assert [(item.run.id, item.position) for item in view.queued] == [(ids[1], 1)]


def test_step_ticks_are_whole_nice_numbers() -> None:
    assert [step_axis(n)["dtick"] for n in (1, 5, 7, 40, 100, 1000)] == [1, 1, 2, 10, 20, 200]
    assert step_axis(0)["range"][1] > 0  # a run at step 0 still gets an axis


def test_metric_names_read_as_people_write_them() -> None:
    from fusionlab.metrics import metric_label

    # the trainer's eval_ metrics are measured on the selection split, never on dev
    assert metric_label("eval_matthews_corrcoef") == "selection-split Matthews correlation (MCC)"
    assert metric_label("eval_accuracy") == "selection-split accuracy" and metric_label("macro_f1") == "macro F1"
    assert metric_label("eval_loss") == "selection-split loss" and metric_label("grad_norm") == "grad norm"


@pytest.mark.slow
def test_the_weight_trajectory_follows_the_snapshots(executed: ExecutedRuns) -> None:
    store = executed.store
    trajectory = weight_trajectory(snapshots_by_step(store, executed.fusion_id))
    steps = sorted({snap.step for snap in store.snapshots(executed.fusion_id)})
    assert steps[0] == 0  # the weights before the first step are recorded too
    assert sorted(trajectory["step"].unique()) == steps
    assert set(trajectory["adapter"]) == {"rte", "cb"}
    for _, rows in trajectory.groupby("step"):  # each snapshot's mean weights still sum to one
        assert rows["weight"].sum() == pytest.approx(1.0, abs=1e-4)
    chart = trajectory_chart(trajectory, "Moved")
    assert [trace.name for trace in chart.data] == ["rte", "cb"]
    assert chart.layout.xaxis.tickformat == "d"
    assert (
        trajectory_chart(weight_trajectory(snapshots_by_step(store, executed.adapter_id)), "none") is None
    )  # adapter run
