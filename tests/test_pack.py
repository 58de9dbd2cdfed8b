"""The pretrained pack: installed into fresh workspaces with its hashes checked, read-only, and truthful cards."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from fusionlab import FusionModel, FusionTrainer, ModelConfig, TrainingConfig
from fusionlab.base_model import load_tokenizer
from fusionlab.checkpoint import file_sha256
from fusionlab.data import encode_texts
from fusionlab.pack import PACK_DIR, PackError, install_pack, read_card
from fusionlab.pack.card import CARD_FILE, DevScore, encode_predictions
from fusionlab.pack.recipe import ADAPTERS, FUSIONS
from fusionlab.pack.store import (
    MANIFEST_FILE,
    entry_for,
    is_pack_artifact,
    pack_cards,
    read_manifest,
    ready_workspace,
)
from fusionlab.pack.verify import NO_PREDICTIONS, SPOT_EXAMPLES, SpotCheck, allowed, spot_rows, summary, verify_pack
from fusionlab.workspace import Workspace

pytestmark = pytest.mark.skipif(not (PACK_DIR / MANIFEST_FILE).is_file(), reason="the pack is not built")


@pytest.fixture
def with_pack(monkeypatch):
    monkeypatch.setenv("FUSIONLAB_PACK", str(PACK_DIR))


def test_the_pack_holds_every_recipe_and_stays_small():
    manifest = read_manifest(PACK_DIR)
    assert [(e.kind, e.name) for e in manifest.entries] == [
        *(("adapter", r.task) for r in ADAPTERS),
        *(("fusion", r.name) for r in FUSIONS),
    ]
    size = sum(p.stat().st_size for p in PACK_DIR.rglob("*") if p.is_file())
    assert size < 21 * 2**20, f"the pack is {size / 2**20:.1f} MiB"
    recipes = {r.name: r for r in (*ADAPTERS, *FUSIONS)}
    for entry in manifest.entries:
        card = read_card(PACK_DIR / entry.relative_dir)
        assert card.name == entry.name and card.kind == entry.kind
        assert card.recipe == recipes[entry.name].to_dict()  # the shipped pack is what the recipe builds
        assert card.dev.examples > 0 and card.steps > 0 and 0 < card.best_step <= card.steps
        assert (card.versions["fusionlab"] and card.data.train_sha256 and card.content_hash) or card.kind == "fusion"
        # rounding to float16 for storage is measured, and costs at most half a point
        full = card.dev_full_precision[card.dev.main_metric]
        assert abs(full - card.dev.main) <= 0.005, (entry.name, full, card.dev.main)


def test_a_fresh_workspace_gets_the_pack_once_and_keeps_a_users_own(tmp_path, with_pack):
    workspace = Workspace(tmp_path / "ws").ensure()
    (workspace.adapters_dir / "cola").mkdir(parents=True)
    (workspace.adapters_dir / "cola" / "fusionlab.json").write_text("{}")  # the user's own (broken) cola
    installed = install_pack(workspace)
    names = {e.relative_dir for e in read_manifest(PACK_DIR).entries}
    assert set(installed) == names - {"adapters/cola"}
    assert (workspace.adapters_dir / "cola" / "fusionlab.json").read_text() == "{}"
    assert install_pack(workspace) == []
    assert set(ready_workspace(workspace.root).list_fusions()) == {r.name for r in FUSIONS}


def test_a_workspace_copy_gets_the_packs_new_card_only_over_the_packs_weights(tmp_path, with_pack):
    """A card corrected in the pack (the same weights) reaches workspaces that installed the older one; a copy
    whose weights are not the pack's keeps its card, and a user's own artifact is never touched."""
    workspace = ready_workspace(tmp_path / "ws")
    card = workspace.adapter_dir("cola") / CARD_FILE
    shipped = card.read_text()
    older = json.loads(shipped)
    older["selection"]["scored_examples"] = 1000  # as cards said before the count was corrected
    card.write_text(json.dumps(older))
    ready_workspace(workspace.root)
    assert card.read_text() == shipped
    weights = workspace.adapter_dir("cola") / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # another pack's weights: its card describes them
    weights.write_bytes(bytes(data))
    card.write_text(json.dumps(older))
    install_pack(workspace)
    assert json.loads(card.read_text()) == older


def test_a_damaged_pack_file_is_refused_with_its_name(tmp_path):
    pack = tmp_path / "pack"
    shutil.copytree(PACK_DIR, pack)
    weights = pack / "adapters" / "sst2" / "adapter.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    workspace = Workspace(tmp_path / "ws").ensure()
    with pytest.raises(PackError, match=r"adapters/sst2: adapter.safetensors has SHA-256"):
        install_pack(workspace, pack)
    assert not (workspace.adapters_dir / "sst2").exists()


def test_the_weights_digest_follows_the_weights_and_not_the_cards():
    manifest = read_manifest(PACK_DIR)
    digest = manifest.weights_digest()
    sst2 = manifest.entry("adapter", "sst2")
    sst2.files[CARD_FILE] = "0" * 64  # a re-scored card: the same weights
    assert manifest.weights_digest() == digest
    sst2.files["adapter.safetensors"] = "0" * 64  # other weights
    assert manifest.weights_digest() != digest and len(digest) == 16


def test_pack_artifacts_are_read_only_for_training(tmp_path, with_pack, shared_data_dir):
    workspace = ready_workspace(tmp_path / "ws")
    trainer = FusionTrainer(workspace=workspace, data_dir=shared_data_dir)
    with pytest.raises(ValueError, match="comes from the pretrained pack and is read-only"):
        trainer.train_adapter("rte", name="rte")
    with pytest.raises(ValueError, match="read-only"):
        trainer.train_fusion("imdb", ["imdb", "sst2"], name="imdb-attention")
    # a default name follows the one naming rule (the CLI's): <target>-<method>, beside the pack's as -2
    tiny = TrainingConfig(max_steps=2, max_train_samples=16, max_eval_samples=16, per_device_train_batch_size=8)
    trainer.model_config = ModelConfig(max_length=32)
    result = trainer.train_fusion("imdb", ["imdb", "sst2"], training_config=tiny)
    assert result.name == "imdb-attention-2" and (workspace.fusions_dir / "imdb-attention-2").is_dir()
    assert is_pack_artifact(workspace.fusions_dir / "imdb-attention")  # the pack's, untouched


@pytest.mark.slow
def test_the_pack_fusions_load_and_lean_on_their_adapters(tmp_path, with_pack):
    workspace = ready_workspace(tmp_path / "ws")
    tokenizer = load_tokenizer()
    model = FusionModel.from_pretrained(workspace.fusion_dir("imdb-attention")).eval()
    encoded = encode_texts(tokenizer, ["This movie is absolutely fantastic!", "A dull, lifeless waste of time."])
    with torch.no_grad():
        fused = model(**encoded.inputs, output_fusion_weights=True)
        alone = model(**encoded.inputs, adapter_names=["imdb"])
    labels = model.label_names()
    assert [labels[i] for i in fused.logits.argmax(-1)] == ["pos", "neg"]
    assert [labels[i] for i in alone.logits.argmax(-1)] == ["pos", "neg"]
    weights = torch.stack([w.sum(dim=(0, 1, 2)) for w in fused.fusion_weights])  # [layers, adapters]
    assert not torch.allclose(weights / weights.sum(-1, keepdim=True), torch.full_like(weights, 0.25), atol=0.02)


@pytest.mark.slow
def test_every_shipped_artifact_reproduces_its_card(shared_data_dir):
    """Every adapter, every fusion and each fusion's own adapter alone: the saved weights re-predict a fixed
    sample of dev examples as the card records, and each card's metrics follow from its recorded predictions
    over the whole dev split (which is what makes the sample a check of the card's number)."""
    examples = SPOT_EXAMPLES // 2  # half of `fusionlab pack verify`'s sample: other weights disagree on most of it
    checks = verify_pack(PACK_DIR, shared_data_dir, examples=examples, log=lambda line: None)
    assert len(checks) == len(ADAPTERS) + 2 * len(FUSIONS)
    assert all(check.passed for check in checks), [check.text() for check in checks if not check.passed]
    cards = {card.name: card for card in pack_cards(PACK_DIR)}
    for check in checks:
        assert check.examples == min(examples, cards[check.artifact].dev.examples)


@pytest.mark.slow
def test_verify_flags_a_card_its_weights_or_predictions_do_not_back(tmp_path, shared_data_dir):
    """A copy of the pack with cb's card altered (its manifest entry re-hashed, as a careless rebuild would):
    metrics its predictions do not give, predictions its weights do not make, none at all. Then a card changed
    behind the manifest's back, and a dev file other than the one the card was scored on. Each is reported with
    its reason; none passes, and only the first two ran the weights."""
    root = tmp_path / "pack"
    shutil.copytree(PACK_DIR, root)
    path = root / "adapters" / "cb" / "card.json"
    original = json.loads(path.read_text())

    def check_with(change, rehash: bool = True, data=shared_data_dir) -> SpotCheck:
        card = json.loads(json.dumps(original))
        change(card["dev"])
        path.write_text(json.dumps(card))
        if rehash:
            manifest = read_manifest(root)
            manifest.entries = [entry_for(root, e.kind, e.name) if e.name == "cb" else e for e in manifest.entries]
            (root / MANIFEST_FILE).write_text(manifest.to_json())
        [check] = verify_pack(root, data, only=["cb"], log=lambda line: None)
        return check

    def better_metric(dev):
        dev["metrics"]["accuracy"] += 0.1

    def other_class(dev):
        dev["predictions"] = "".join(str((int(p) + 1) % 3) for p in dev["predictions"])

    fudged = check_with(better_metric)
    assert fudged.checked and not fudged.card_consistent and fudged.disagreements <= allowed(56)
    assert not fudged.passed and "do NOT follow" in fudged.text()
    wrong = check_with(other_class)
    assert wrong.examples == 56 and wrong.disagreements >= 55 and not wrong.passed
    older = check_with(lambda dev: dev.pop("predictions"))
    assert not older.checked and not older.passed and older.problem == NO_PREDICTIONS
    behind = check_with(better_metric, rehash=False)
    assert not behind.checked and "card.json has SHA-256" in behind.problem

    data = tmp_path / "data"
    shutil.copytree(shared_data_dir / "cb", data / "cb")
    dev_file = data / original["data"]["validation_file"]
    dev_file.write_text(dev_file.read_text().replace("\n", "\n\n", 1))  # the same examples, another file
    other_file = check_with(lambda dev: None, data=data)
    assert not other_file.checked and "not the file its card was scored on" in other_file.problem
    assert summary([fudged, other_file]) == "1 of 2 models checked: 0 reproduce their card, 1 do not; 1 not checkable"
    with pytest.raises(ValueError, match="no artifact nope"):
        verify_pack(root, shared_data_dir, only=["nope"])


def test_every_shipped_card_says_how_many_examples_its_score_is_on():
    """The selection block's count of scoring examples is the dev score's own (the training loop's dev may have
    been capped; the card's score is a fresh evaluation on the full split): `pack list` prints both."""
    cards = pack_cards(PACK_DIR)
    assert len(cards) == len(ADAPTERS) + len(FUSIONS)
    assert {card.name: card.selection.scored_examples for card in cards} == {c.name: c.dev.examples for c in cards}


def test_every_recipe_task_fits_a_cards_one_digit_predictions():
    """A card writes each prediction as one digit: a task with more than 10 classes would fail only after its
    training, at the end of the build."""
    from fusionlab.data.tasks import get_task

    tasks = {recipe.task for recipe in ADAPTERS} | {recipe.target for recipe in FUSIONS}
    assert all(get_task(task).num_labels <= 10 for task in tasks)


def test_recorded_predictions_round_trip_and_must_cover_every_example():
    ids = np.array([0, 2, 1, 1, 0])
    assert np.array_equal(
        DevScore({"accuracy": 0.5}, "accuracy", 5, predictions=encode_predictions(ids)).prediction_ids(), ids
    )
    with pytest.raises(ValueError, match="predictions"):
        DevScore({"accuracy": 0.5}, "accuracy", 6, predictions=encode_predictions(ids))
    with pytest.raises(ValueError, match="predictions"):
        DevScore({"accuracy": 0.5}, "accuracy", 1, predictions="²")  # a digit, but not a class id
    with pytest.raises(ValueError, match="at most 10 classes"):
        encode_predictions(np.array([3, 10]))
    assert spot_rows(50, 200) == list(range(50))
    rows = spot_rows(9_815, 200)
    assert len(set(rows)) == 200 and rows == sorted(rows) and rows == spot_rows(9_815, 200) and rows[-1] < 9_815


def test_cards_round_trip_through_json():
    for entry in read_manifest(PACK_DIR).entries:
        path = PACK_DIR / entry.relative_dir / "card.json"
        card = read_card(path.parent)
        assert json.loads(card.to_json()) == json.loads(path.read_text())


@pytest.mark.slow
def test_build_writes_cards_from_fresh_evaluations_resumes_and_rebuilds_what_depends_on_a_change(
    tmp_path, monkeypatch, shared_data_dir
):
    """The real builder on a miniature recipe: two adapters and a fusion over them, a few steps each."""
    import dataclasses

    from safetensors.torch import load_file

    import fusionlab.pack.build as build
    from fusionlab.pack.recipe import AdapterRecipe, FusionRecipe

    tiny = {"max_train_samples": 48, "max_eval_samples": 24, "batch_size": 8, "max_length": 48}
    adapters = (AdapterRecipe("cb", steps=3, **tiny), AdapterRecipe("rte", steps=3, **tiny))
    fusion = FusionRecipe("cb-fused", "cb", ["cb", "rte"], steps=3, **tiny)
    monkeypatch.setattr(build, "ADAPTERS", adapters)
    monkeypatch.setattr(build, "FUSIONS", (fusion,))
    lines: list[str] = []
    manifest = build.build_pack(tmp_path / "pack", data_dir=shared_data_dir, log=lines.append)
    assert [(e.kind, e.name) for e in manifest.entries] == [
        ("adapter", "cb"),
        ("adapter", "rte"),
        ("fusion", "cb-fused"),
    ]
    card = read_card(tmp_path / "pack" / "fusions" / "cb-fused")
    assert card.dev.examples == 56 and card.in_training_eval_examples == 24  # scored on the full dev split
    assert card.selection.scored_examples == 56 and card.selection.selection_examples == 24  # the loop's dev: 24
    assert card.own_adapter_dev is not None and card.own_adapter_dev.examples == 56
    assert len(card.dev.predictions) == len(card.own_adapter_dev.predictions) == 56  # what `pack verify` checks
    assert card.data.train_file == "cb/train.jsonl" and card.data.train_examples == 48
    weights = load_file(str(tmp_path / "pack" / "adapters" / "cb" / "adapter.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float16}
    workspace = Workspace(tmp_path / "ws").ensure()
    install_pack(workspace, tmp_path / "pack")
    assert FusionModel.from_pretrained(workspace.fusion_dir("cb-fused")).fusion_config.adapter_names == ["cb", "rte"]

    lines.clear()
    build.build_pack(tmp_path / "pack", data_dir=shared_data_dir, log=lines.append)
    assert all(line.endswith("up to date") for line in lines), lines
    # a card from before predictions were recorded gets them from its saved weights, same metrics, no retraining
    path = tmp_path / "pack" / "fusions" / "cb-fused" / "card.json"
    older = json.loads(path.read_text())
    for block in ("dev", "own_adapter_dev"):
        older[block].pop("predictions")
    path.write_text(json.dumps(older))
    lines.clear()
    build.build_pack(tmp_path / "pack", data_dir=shared_data_dir, log=lines.append)
    assert sum("records no dev predictions" in line for line in lines) == 1, lines
    assert not any(": training {" in line for line in lines)
    assert read_card(path.parent).dev == card.dev and read_card(path.parent).own_adapter_dev == card.own_adapter_dev
    # a card whose selection block counted the loop's capped dev evaluation is corrected, nothing scored again
    older = json.loads(path.read_text())
    older["selection"]["scored_examples"] = 24
    path.write_text(json.dumps(older))
    lines.clear()
    manifest = build.build_pack(tmp_path / "pack", data_dir=shared_data_dir, log=lines.append)
    assert "fusion cb-fused: its card said it was scored on 24 examples; its score is on 56" in lines, lines
    assert read_card(path.parent).selection.scored_examples == 56 and read_card(path.parent).dev == card.dev
    assert manifest.entry("fusion", "cb-fused").files[CARD_FILE] == file_sha256(path)  # the manifest follows

    monkeypatch.setattr(build, "ADAPTERS", (adapters[0], dataclasses.replace(adapters[1], seed=7)))  # new weights
    lines.clear()
    build.build_pack(tmp_path / "pack", data_dir=shared_data_dir, log=lines.append)
    rebuilt = [line.split(":")[0] for line in lines if ": training {" in line]
    assert rebuilt == ["adapter rte", "fusion cb-fused"]  # the fusion over the changed adapter, too


def test_the_tiny_demo_in_a_pack_workspace_uses_the_packs_adapters(tmp_path, with_pack):
    """A workspace with the pack holds read-only rte, mnli...: the demo does not try to retrain them (it would be
    refused); a fusion whose name the pack holds is saved beside it."""
    from fusionlab.demo import demo_runs, workspace_plan
    from fusionlab.runspec import FusionRun

    workspace = ready_workspace(tmp_path / "ws")
    plan = workspace_plan(workspace, "tiny")
    assert all(isinstance(run, FusionRun) for run in plan)  # every tiny adapter is the pack's already
    assert [run.name for run in plan] == ["rte-attention-2", "rte-weighted"]
    assert [run.adapters for run in plan] == [run.adapters for run in demo_runs("tiny") if isinstance(run, FusionRun)]


def test_pack_list_says_which_adapters_did_not_learn(capsys, with_pack):
    """``fusionlab pack list`` flags every artifact whose dev interval reaches its majority class, and only those:
    a comparison built on an adapter that did not learn must not pass for transfer."""
    from fusionlab.cli import main

    assert main(["pack", "list"]) == 0
    blocks = re.split(r"\n  (?=\S)", capsys.readouterr().out)[1:]  # one per artifact, with its indented lines
    for entry, block in zip(read_manifest(PACK_DIR).entries, blocks, strict=True):
        card = read_card(PACK_DIR / entry.relative_dir)
        baseline = card.dev.majority_baseline[card.dev.main_metric]
        assert block.split()[:2] == [entry.kind, entry.name]
        assert ("did not learn" in block) == (card.dev.interval.low <= baseline), (entry.name, block)


def test_the_documented_table_is_the_shipped_packs():
    """docs/pack.md shows ``fusionlab pack list --markdown`` verbatim: a rebuilt pack cannot leave old numbers."""
    from fusionlab.pack.table import markdown_table

    doc = (PACK_DIR.parents[1] / "docs" / "pack.md").read_text(encoding="utf-8")
    after = doc.split("<!-- pack-table", 1)[-1].split("-->\n", 1)[-1]
    shown = after.split("\n<!-- /pack-table -->", 1)[0]
    assert shown == markdown_table(PACK_DIR), "regenerate the table: fusionlab pack list --markdown"


def test_the_playground_opens_on_a_fusion_that_shows_transfer(tmp_path, with_pack):
    """The pack holds a fusion that beats its own adapter beyond noise with both beyond their majority class, and
    the Playground opens on such a fusion, a sentiment one (issue #21: what a class sees first shows transfer)."""
    from fusionlab.dashboard.inference import SENTIMENT_TARGETS, preferred_fusion
    from fusionlab.reported import Reported

    workspace = ready_workspace(tmp_path / "ws")
    fusions = workspace.list_fusions()
    cards = {name: read_card(workspace.fusion_dir(name)) for name in fusions}
    transfer = [n for n, c in cards.items() if Reported.from_card(c).shows_transfer()]
    chosen = preferred_fusion(workspace, fusions)
    assert transfer, "the pack must hold a fusion whose gain over its adapter is beyond noise (issue #21, section 5)"
    assert chosen in transfer and cards[chosen].task in SENTIMENT_TARGETS  # imdb-attention, the notebook's story


def test_measuring_md_shows_what_the_cli_prints_for_the_packs_rte_fusion():
    """docs/measuring.md's example of the "within noise" and "did not learn" rules is the pack's rte-attention as
    :meth:`Reported.lines` prints it today, verbatim: the rules cannot change without the example."""
    from fusionlab.reported import Reported

    doc = (PACK_DIR.parents[1] / "docs" / "measuring.md").read_text(encoding="utf-8")
    shown = doc.split("(`fusionlab.reported.Reported.lines`):\n\n```\n", 1)[1].split("\n```", 1)[0]
    assert shown.splitlines() == Reported.from_card(read_card(PACK_DIR / "fusions" / "rte-attention")).lines("rte")


def test_the_classroom_demo_evaluates_imdb_live_often_enough_to_keep_its_early_best_step():
    """On 100 reviews the fusion's best step comes early (the pack's learning curve: 10 to 60 steps in), so
    imdb-live is evaluated every 10 steps; rte-live keeps the profile's cadence."""
    from fusionlab.demo import PROFILES, demo_runs

    runs = {run.name: run for run in demo_runs("classroom")}
    imdb, rte = runs["imdb-live"].training_config, runs["rte-live"].training_config
    assert (imdb.eval_steps, imdb.max_steps) == (10, 40)
    assert rte.eval_steps == PROFILES["classroom"].eval_steps == 40
