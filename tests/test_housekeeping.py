"""Removing artifacts (the teacher's delete, pruning earlier adapter and fusion versions) never breaks what remains."""

from __future__ import annotations

import pytest
import torch

from fusionlab import FusionModel
from fusionlab.housekeeping import RemovalRefused, delete_artifact, fusions_using, prune_versions, unused_versions
from fusionlab.pack.card import CARD_FILE
from fusionlab.runstore import RunStore
from fusionlab.workspace import Workspace
from tests.conftest import tiny_encoder
from tests.test_checkpoint import save_workspace, trained_like
from tests.test_model import batch


def retrain(model, workspace: Workspace, name: str, shift: float) -> None:
    with torch.no_grad():
        model.adapter_manager.adapters[name].layers[0].up.bias.add_(shift)
    model.save_pretrained(workspace.adapter_dir(name), adapter_name=name)


def logits(workspace: Workspace, fusion: str) -> torch.Tensor:
    ids, mask = batch()
    model = FusionModel.from_pretrained(workspace.fusion_dir(fusion), encoder=tiny_encoder("bert")).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def test_pruning_removes_only_versions_no_fusion_was_trained_on(tmp_path):
    workspace = Workspace(tmp_path).ensure()
    model = trained_like()
    save_workspace(model, workspace.root)  # adapters a, b, c and fusion f1 over them
    before = logits(workspace, "f1")
    retrain(model, workspace, "c", 0.5)  # f1's version of c is kept: f1 pins it
    retrain(model, workspace, "c", 0.5)  # the middle version is pinned by nothing
    assert len(list((workspace.adapters_dir / ".versions" / "c").iterdir())) == 2
    unused = unused_versions(workspace)
    assert [r.name.split("@")[0] for r in unused] == ["c"] and unused[0].size_bytes > 0

    store = RunStore(workspace.runs_db)
    run_id = store.enqueue("train_adapter", "d", {"task": "rte"})
    store.claim_next(1, "cpu")
    with pytest.raises(RemovalRefused, match=f"run #{run_id} is running"):
        prune_versions(workspace)
    assert unused_versions(workspace) == unused  # nothing removed while a run is going
    store.finish(run_id, {}, {})

    assert prune_versions(workspace) == unused
    assert not unused[0].path.exists() and unused_versions(workspace) == []
    assert len(list((workspace.adapters_dir / ".versions" / "c").iterdir())) == 1
    torch.testing.assert_close(logits(workspace, "f1"), before, rtol=0, atol=0)  # f1 still loads its own c


def retrain_fusion(model, workspace: Workspace, name: str, shift: float) -> None:
    with torch.no_grad():
        model.fusion_layers[0].value.bias.add_(shift)
    model.save_pretrained(workspace.fusion_dir(name))


def test_fusion_versions_are_pruned_and_deleted_with_the_adapter_versions(tmp_path, capsys):
    """One pruning covers both kinds: an earlier fusion version is needed by nothing, so it goes (after the
    adapter versions no fusion pins); deleting a fusion takes its earlier versions with it."""
    from fusionlab.cli import main

    workspace = Workspace(tmp_path).ensure()
    model = trained_like()
    save_workspace(model, workspace.root)
    retrain(model, workspace, "c", 0.5)
    retrain(model, workspace, "c", 0.5)  # an adapter version no fusion pins
    retrain_fusion(model, workspace, "f1", 0.2)  # f1 now pins the latest c; its first version is kept
    kept = workspace.fusions_dir / ".versions" / "f1"
    assert len(list(kept.iterdir())) == 1
    unused = unused_versions(workspace)
    assert [(r.kind, r.name.split("@")[0]) for r in unused] == [
        ("adapter version", "c"),
        ("adapter version", "c"),
        ("fusion version", "f1"),
    ]  # both earlier c's: the first is pinned only by f1's kept version, which this pruning removes too
    old_f1 = f"f1@{next(kept.iterdir()).name}"
    assert fusions_using(workspace, "a") == ["f1", old_f1]  # a kept fusion version loads only while a does
    with pytest.raises(RemovalRefused, match=f"fused by f1, {old_f1}: .* with `fusionlab delete versions`"):
        delete_artifact(workspace, "adapter", "a")

    assert main(["delete", "versions", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "deleted fusion version f1@" in out and out.count("deleted adapter version c@") == 2
    assert not list(kept.iterdir()) and workspace.list_fusions() == ["f1"]
    logits(workspace, "f1")  # the latest f1 still loads
    assert main(["delete", "versions", "--home", str(tmp_path)]) == 0
    assert "no earlier version is unused; nothing deleted" in capsys.readouterr().out

    retrain_fusion(model, workspace, "f1", 0.2)
    assert len(list(kept.iterdir())) == 1
    delete_artifact(workspace, "fusion", "f1")  # with its kept versions: then nothing holds a any more
    assert not kept.exists() and workspace.list_fusions() == []
    delete_artifact(workspace, "adapter", "a")


def test_delete_refuses_what_would_break_something(tmp_path):
    workspace = Workspace(tmp_path).ensure()
    save_workspace(trained_like(), workspace.root)
    assert fusions_using(workspace, "a") == ["f1"]
    with pytest.raises(RemovalRefused, match="fused by f1: delete those fusions first"):
        delete_artifact(workspace, "adapter", "a")
    with pytest.raises(RemovalRefused, match="no fusion called 'nope'"):
        delete_artifact(workspace, "fusion", "nope")
    with pytest.raises(ValueError, match="must not contain path separators"):
        delete_artifact(workspace, "fusion", "../adapters")

    (workspace.fusion_dir("f1") / CARD_FILE).write_text("{}")  # as the pack's artifacts carry
    with pytest.raises(RemovalRefused, match="pretrained pack, which is read-only"):
        delete_artifact(workspace, "fusion", "f1")
    (workspace.fusion_dir("f1") / CARD_FILE).unlink()

    store = RunStore(workspace.runs_db)
    run_id = store.enqueue("train_fusion", "f1", {"target": "rte"})
    with pytest.raises(RemovalRefused, match=f"run #{run_id} \\(queued\\) writes fusion 'f1': cancel it first"):
        delete_artifact(workspace, "fusion", "f1")
    store.request_cancel(run_id)

    removed = delete_artifact(workspace, "fusion", "f1")
    assert removed.kind == "fusion" and removed.size_bytes > 0
    assert workspace.list_fusions() == [] and fusions_using(workspace, "a") == []
    delete_artifact(workspace, "adapter", "a")  # no fusion uses it any more
    assert workspace.list_adapters() == ["b", "c"]
    assert not any(p.name.startswith(".tmp-") for p in workspace.adapters_dir.iterdir())  # nothing left aside


def test_the_command_line_deletes_and_says_why_not(tmp_path, capsys):
    from fusionlab.cli import main

    workspace = Workspace(tmp_path).ensure()
    model = trained_like()
    save_workspace(model, workspace.root)
    retrain(model, workspace, "c", 0.5)
    retrain(model, workspace, "c", 0.5)
    assert main(["delete", "adapter", "b", "--home", str(tmp_path)]) == 2
    assert "adapter 'b' is fused by f1" in capsys.readouterr().err
    assert main(["delete", "versions", "--home", str(tmp_path)]) == 0
    assert "deleted adapter version c@" in capsys.readouterr().out
    assert main(["delete", "fusion", "f1", "--home", str(tmp_path)]) == 0
    assert main(["delete", "adapter", "c", "--home", str(tmp_path)]) == 0
    assert not (workspace.adapters_dir / ".versions" / "c").exists()  # its kept version went with it
    assert workspace.list_adapters() == ["a", "b"]
