"""Stored records carry a schema version: what today's code wrote before versions existed still opens and
loses nothing, and a record from a newer fusionlab is refused with a message that says so."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.runspec import AdapterRun, FusionRun, RunResult, parse_run, run_record, run_result
from fusionlab.runstore import STORE_VERSION, NewerStoreError, RunStore
from fusionlab.schema import SCHEMA_VERSION, NewerSchemaError, upgrade

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "schema_v1"


@pytest.fixture
def old_store(tmp_path) -> RunStore:
    shutil.copy(FIXTURE / "runs.sqlite", tmp_path / "runs.sqlite")  # opening migrates it: never the fixture itself
    assert sqlite3.connect(tmp_path / "runs.sqlite").execute("PRAGMA user_version").fetchone()[0] == 0
    return RunStore(tmp_path / "runs.sqlite")


def test_a_run_store_from_before_versions_opens_and_loses_nothing(old_store):
    expected = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))["runs"]
    runs = old_store.list_runs()
    assert sqlite3.connect(old_store.path).execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    assert len(runs) == len(expected) == 3
    for run, want in zip(sorted(runs, key=lambda r: r.id), sorted(expected, key=lambda r: r["id"])):
        for key in ("kind", "name", "status", "config", "final_metrics", "artifacts", "owner", "owner_name", "error"):
            assert getattr(run, key) == want[key], (run.id, key)
        metrics = old_store.metrics(run.id).drop(columns="created_at").to_dict(orient="records")
        assert metrics == want["metrics"]
        assert [s.payload for s in old_store.snapshots(run.id)] == want["snapshots"]
        parse_run(run.kind, run.config)  # every stored config still builds its typed run
    finished = next(r for r in runs if r.status == "finished" and r.final_metrics)
    result = run_result(finished)
    assert result.metrics == {"accuracy": 0.55} and result.score_interval is None  # an old result: no interval
    assert result.score_text() == "0.550"
    record = run_record(finished)
    assert record["schema_version"] == SCHEMA_VERSION and record["result"]["metrics"] == {"accuracy": 0.55}
    # and it keeps working as a store: a new run goes in after the old ones
    new_id = old_store.enqueue("train_adapter", "rte-2", AdapterRun(task="rte", name="rte-2").to_dict())
    assert new_id == max(r.id for r in runs) + 1


def test_a_store_from_a_newer_fusionlab_is_refused_plainly(old_store):
    with sqlite3.connect(old_store.path) as conn:
        conn.execute(f"PRAGMA user_version = {STORE_VERSION + 1}")
    with pytest.raises(NewerStoreError, match="written by a newer fusionlab"):
        RunStore(old_store.path)


def test_checkpoints_from_before_versions_open_and_lose_nothing():
    expected = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))["checkpoints"]
    for path, want in expected.items():
        assert read_meta(FIXTURE / path) == want


def test_a_checkpoint_from_a_newer_fusionlab_is_refused_plainly(tmp_path):
    shutil.copytree(FIXTURE / "adapters" / "rte", tmp_path / "rte")
    meta_file = tmp_path / "rte" / "fusionlab.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    meta["format_version"] += 1
    meta["adapter_config"]["a_future_option"] = True
    meta_file.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CheckpointError, match="written by a newer fusionlab"):
        read_meta(tmp_path / "rte")


def test_run_configs_and_results_carry_the_version_and_refuse_a_newer_one():
    run = FusionRun(target_task="rte", adapters=["rte", "mnli"])
    stored = run.to_dict()
    assert stored["schema_version"] == SCHEMA_VERSION
    assert parse_run(run.kind, stored) == run
    assert parse_run(run.kind, {k: v for k, v in stored.items() if k != "schema_version"}) == run  # a v1 row
    future = {**stored, "schema_version": SCHEMA_VERSION + 1, "retries": 3}
    with pytest.raises(NewerSchemaError, match="written by a newer fusionlab"):
        parse_run(run.kind, future)
    same_version_unknown = {**stored, "retries": 3}
    with pytest.raises(ValueError, match="unknown field"):  # a typo in a current record stays an error
        parse_run(run.kind, same_version_unknown)
    result = RunResult("adapter", "rte", "rte", "x", "accuracy", {"accuracy": 0.6})
    assert RunResult.from_json(result.to_json()) == result
    with pytest.raises(NewerSchemaError):
        RunResult.from_dict({**result.to_dict(), "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(ValueError, match="positive integer"):
        upgrade({"schema_version": "two"}, "a record")


# -- one set of defaults ---------------------------------------------------------------------------------------


def test_the_cli_and_the_train_page_queue_the_same_run_for_the_same_choices(tmp_path, monkeypatch):
    """The Train page's default form and ``--profile classroom`` on the command line are one run; without a
    profile the command line trains the pack's recipe for the task, exactly as the pack was built."""
    from fusionlab.cli import adapter_run, build_parser, fusion_run
    from fusionlab.dashboard.train_view import ADAPTER_LIMITS, FUSION_LIMITS, adapter_run_config, fusion_run_config
    from fusionlab.pack.recipe import adapter_recipe

    monkeypatch.setenv("FUSIONLAB_PACK", "off")
    parser = build_parser()
    home = ["--home", str(tmp_path), "--data-dir", "/data"]
    cli = adapter_run(parser.parse_args(["train-adapter", "rte", "--profile", "classroom", *home]))
    page = adapter_run_config("rte", 64, "relu", ADAPTER_LIMITS, "/data")
    assert cli.to_dict() == page.to_dict()
    args = ["train-fusion", "rte", "--adapters", "rte,mnli", "--profile", "classroom", *home]
    cli = fusion_run(parser.parse_args(args))
    page = fusion_run_config("rte", ["rte", "mnli"], limits=FUSION_LIMITS, data_dir="/data")
    assert cli.to_dict() == page.to_dict()

    recipe = adapter_recipe("boolq")
    run = adapter_run(parser.parse_args(["train-adapter", "boolq", *home]))
    assert run.training_config == recipe.training_config() and run.model_config == recipe.model_config()
    chosen = adapter_run(parser.parse_args(["train-adapter", "boolq", "--lr", "3e-4", "--epochs", "3", *home]))
    assert chosen.training_config.learning_rate == 3e-4 and chosen.training_config.max_steps == -1
    assert chosen.training_config.num_train_epochs == 3 and chosen.model_config.max_length == recipe.max_length
