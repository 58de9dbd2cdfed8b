"""Every training default comes from one function: the CLI, the Train page and the demo queue the same runs for
the same choices, and an override means what the user chose (``None``: not chosen; ``NO_LIMIT``: chosen none)."""

from __future__ import annotations

import dataclasses

import pytest

from fusionlab.budgets import CLASSROOM, GENERIC, NO_LIMIT, resolve_budget
from fusionlab.cli import adapter_run, build_parser, fusion_run
from fusionlab.dashboard.train_view import ADAPTER_LIMITS, FUSION_LIMITS, adapter_run_config, fusion_run_config
from fusionlab.data import get_task, load_split
from fusionlab.pack import PACK_DIR, read_card
from fusionlab.pack.recipe import ADAPTERS, FUSIONS, fusion_recipe, fusion_sources
from fusionlab.pack.store import MANIFEST_FILE


def _args(tmp_path, *argv: str):
    return build_parser().parse_args([*argv, "--home", str(tmp_path / "ws"), "--data-dir", "/data"])


def test_the_cli_and_the_train_page_queue_the_same_adapter_run(tmp_path):
    cli = adapter_run(_args(tmp_path, "train-adapter", "rte", "--profile", "classroom"))
    page = adapter_run_config("rte", 64, "relu", ADAPTER_LIMITS, "/data")
    assert cli.to_dict() == page.to_dict()
    assert cli.training_config.max_steps == CLASSROOM.steps  # the page's classroom profile, named in the CLI


def test_the_cli_and_the_train_page_queue_the_same_fusion_run(tmp_path):
    cli = fusion_run(_args(tmp_path, "train-fusion", "rte", "--adapters", "rte,mnli,sst2", "--profile", "classroom"))
    page = fusion_run_config("rte", ["rte", "mnli", "sst2"], limits=FUSION_LIMITS, data_dir="/data")
    assert cli.to_dict() == page.to_dict()
    assert cli.training_config.snapshot_steps == 10  # the live view's weight snapshots, in both


def test_the_cli_options_override_the_profile_and_nothing_else(tmp_path):
    run = adapter_run(_args(tmp_path, "train-adapter", "cb", "--profile", "classroom", "--max-steps", "30"))
    config = run.training_config
    assert (config.max_steps, config.eval_steps) == (30, 7)  # steps chosen without a cadence: four evaluations
    assert config.max_train_samples == CLASSROOM.max_train_samples and config.learning_rate == CLASSROOM.learning_rate


def test_the_recipe_profile_is_the_packs_recipe():
    for recipe in ADAPTERS:
        assert resolve_budget(recipe.task, "adapter") == recipe.budget()
    for fusion in FUSIONS:
        assert resolve_budget(fusion.target, "fusion") == fusion.budget(snapshots=True)
    # a pack task without a pack fusion: the adapter's schedule (same data), with snapshots for the live view
    cola = resolve_budget("cola", "fusion")
    adapter = next(r for r in ADAPTERS if r.task == "cola").budget()
    assert (cola.steps, cola.epochs, cola.max_length) == (adapter.steps, adapter.epochs, adapter.max_length)
    assert cola.snapshot_steps is not None and cola.snapshot_steps > 0 and cola.eval_steps > 0
    assert resolve_budget("my-own-task", "adapter") == GENERIC


@pytest.mark.skipif(not (PACK_DIR / MANIFEST_FILE).is_file(), reason="the pack is not built")
def test_a_fusion_draws_on_the_packs_sources_and_a_recipe_knows_its_whole_budget(shared_data_dir):
    """``fusion_sources`` is what the pack fuses for a target (else the large-data tasks and SICK, never BoolQ,
    which did not learn); ``steps_for`` is the recipe's epochs in steps on the carved train split: no pack
    artifact trained longer, and rte-attention, which ran its whole budget, trained exactly that many."""
    assert fusion_sources("rte") == ["mnli", "qnli", "sick"] == fusion_recipe("rte").adapters[1:]
    assert fusion_sources("cb") == ["mnli", "qnli", "sst2", "sick"] and fusion_recipe("cb") is None
    assert fusion_sources("sst2") == ["mnli", "qnli", "sick"] and "boolq" not in fusion_sources("cola")
    for recipe in (*(r for r in ADAPTERS if r.task in ("rte", "cb", "mrpc", "imdb")), *FUSIONS):
        name = getattr(recipe, "name", None) or recipe.task
        card = read_card(PACK_DIR / ("fusions" if name in {f.name for f in FUSIONS} else "adapters") / name)
        task = getattr(recipe, "target", None) or recipe.task
        whole = recipe.steps_for(len(load_split(get_task(task), "train", shared_data_dir)))
        assert card.best_step <= card.steps <= whole, name
        if name == "rte-attention":
            assert card.steps == whole
    assert dataclasses.replace(ADAPTERS[0], steps=7).steps_for(10_000) == 7  # a step budget is its own


def test_none_keeps_the_profile_and_no_limit_removes_it():
    assert resolve_budget("rte", "adapter", "classroom", max_eval_samples=None).max_eval_samples == 400
    budget = resolve_budget("rte", "adapter", "classroom", max_eval_samples=NO_LIMIT, eval_steps=NO_LIMIT)
    assert budget.max_eval_samples is None and budget.eval_steps is None
    by_epochs = resolve_budget("rte", "adapter", "classroom", epochs=3)
    assert (by_epochs.steps, by_epochs.epochs) == (-1, 3)
    with pytest.raises(ValueError, match="unknown budget option"):
        resolve_budget("rte", "adapter", weight_decay=0.1)
    with pytest.raises(ValueError, match="unknown budget profile"):
        resolve_budget("rte", "adapter", "fast")
