import json
import shutil

import pytest
import torch

from fusionlab import FusionModel
from fusionlab.checkpoint import CheckpointError, read_meta
from tests.conftest import tiny_encoder
from tests.test_model import batch, build, perturb_adapters


def trained_like(method="attention"):
    """A tiny model whose adapters, fusion and heads all hold non-initial weights."""
    model = build(tiny_encoder("bert"), method).eval()
    perturb_adapters(model)
    torch.manual_seed(11)
    with torch.no_grad():
        for p in list(model.fusion_layers.parameters()) + list(model.heads.parameters()):
            p.add_(torch.randn_like(p) * 0.1)
    return model


def save_workspace(model, root):
    for name in model.adapter_manager.names:
        model.save_pretrained(root / "adapters" / name, adapter_name=name)
    model.save_pretrained(root / "fusions" / "f1")


@pytest.mark.parametrize("method", ["attention", "weighted", "average"])
def test_fusion_save_load_gives_bit_identical_logits(tmp_path, method):
    model = trained_like(method)
    save_workspace(model, tmp_path)
    loaded = FusionModel.from_pretrained(tmp_path / "fusions" / "f1", encoder=tiny_encoder("bert")).eval()
    ids, mask = batch()
    for names in (["a", "b", "c"], ["b", "c"], ["c"]):
        expected = model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
        got = loaded(input_ids=ids, attention_mask=mask, adapter_names=names).logits
        assert torch.equal(got, expected), names
    assert loaded.fusion_config == model.fusion_config
    files = sorted(p.name for p in (tmp_path / "fusions" / "f1").iterdir())
    assert files == ["fusion.safetensors", "fusionlab.json"]  # tensors and JSON only: nothing to unpickle


def test_single_adapter_round_trip(tmp_path):
    model = trained_like()
    model.save_pretrained(tmp_path / "b", adapter_name="b")
    loaded = FusionModel.from_pretrained(tmp_path / "b", encoder=tiny_encoder("bert")).eval()
    ids, mask = batch()
    assert loaded.fusion_config is None and loaded.adapter_manager.names == ["b"]
    assert torch.equal(
        loaded(input_ids=ids, attention_mask=mask).logits,
        model(input_ids=ids, attention_mask=mask, adapter_names=["b"]).logits,
    )
    assert read_meta(tmp_path / "b")["content_hash"] == model.adapter_manager.content_hash("b")


def test_missing_adapter_is_named(tmp_path):
    model = trained_like()
    save_workspace(model, tmp_path)
    for p in (tmp_path / "adapters" / "b").iterdir():
        p.unlink()
    (tmp_path / "adapters" / "b").rmdir()
    with pytest.raises(CheckpointError, match=r"missing: b \(looked in"):
        FusionModel.from_pretrained(tmp_path / "fusions" / "f1", encoder=tiny_encoder("bert"))


def test_a_retrained_adapter_is_a_new_version_and_the_fusion_keeps_its_own(tmp_path):
    """Retraining an adapter publishes a new version under its name; the fusion trained on the old one keeps
    loading exactly that one (same logits), while the adapter's name resolves to the new weights."""
    model = trained_like()
    save_workspace(model, tmp_path)
    ids, mask = batch()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask, adapter_names=["a", "b", "c"]).logits
        model.adapter_manager.adapters["c"].layers[0].up.bias.add_(0.5)
        new_single = model(input_ids=ids, attention_mask=mask, adapter_names=["c"]).logits
    model.save_pretrained(tmp_path / "adapters" / "c", adapter_name="c")  # retrained after the fusion
    fusion = FusionModel.from_pretrained(tmp_path / "fusions" / "f1", encoder=tiny_encoder("bert")).eval()
    latest = FusionModel.from_pretrained(tmp_path / "adapters" / "c", encoder=tiny_encoder("bert")).eval()
    with torch.no_grad():
        torch.testing.assert_close(fusion(input_ids=ids, attention_mask=mask).logits, before, rtol=0, atol=0)
        torch.testing.assert_close(latest(input_ids=ids, attention_mask=mask).logits, new_single, rtol=0, atol=0)
    assert [p.parent.name for p in (tmp_path / "adapters" / ".versions").glob("*/*")] == ["c"]

    shutil.rmtree(tmp_path / "adapters" / ".versions")  # the old version lost: then the fusion says why
    with pytest.raises(CheckpointError, match=r"changed since: c at"):
        FusionModel.from_pretrained(tmp_path / "fusions" / "f1", encoder=tiny_encoder("bert"))


def test_a_retrained_fusion_keeps_the_version_it_replaces_and_listings_do_not_show_it(tmp_path):
    """Retraining a fusion under its name keeps the replaced one under ``fusions/.versions/<name>/<hash>/`` by
    the adapters' code path: it loads on its own (same logits as before the retrain), the name loads the new
    weights, saving the same weights again keeps nothing twice, and no listing takes the version for a fusion."""
    from fusionlab.workspace import Workspace

    model = trained_like()
    save_workspace(model, tmp_path)
    ids, mask = batch()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
        model.fusion_layers[0].value.weight.add_(0.3)
        after = model(input_ids=ids, attention_mask=mask).logits
    old_sha = read_meta(tmp_path / "fusions" / "f1")["weights_sha256"]
    model.save_pretrained(tmp_path / "fusions" / "f1")  # retrained under its own name
    model.save_pretrained(tmp_path / "fusions" / "f1")  # the same weights again: that version is kept once

    versions = tmp_path / "fusions" / ".versions" / "f1"
    new_sha = read_meta(tmp_path / "fusions" / "f1")["weights_sha256"]
    assert sorted(p.name for p in versions.iterdir()) == sorted([old_sha[:16], new_sha[:16]])
    assert sorted(p.name for p in (versions / old_sha[:16]).iterdir()) == ["fusion.safetensors", "fusionlab.json"]
    old = FusionModel.from_pretrained(versions / old_sha[:16], encoder=tiny_encoder("bert")).eval()  # its adapters
    new = FusionModel.from_pretrained(tmp_path / "fusions" / "f1", encoder=tiny_encoder("bert")).eval()
    with torch.no_grad():
        torch.testing.assert_close(old(input_ids=ids, attention_mask=mask).logits, before, rtol=0, atol=0)
        torch.testing.assert_close(new(input_ids=ids, attention_mask=mask).logits, after, rtol=0, atol=0)
    assert Workspace(tmp_path).list_fusions() == ["f1"] and Workspace(tmp_path).list_adapters() == ["a", "b", "c"]


def test_bad_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        FusionModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(CheckpointError, match="incomplete"):
        FusionModel.from_pretrained(tmp_path / "half")
    model = trained_like()
    model.save_pretrained(tmp_path / "a", adapter_name="a")
    (tmp_path / "a" / "adapter.safetensors").write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(CheckpointError, match="does not match the SHA-256 recorded when it was saved"):
        FusionModel.from_pretrained(tmp_path / "a", encoder=tiny_encoder("bert"))
    meta = tmp_path / "a" / "fusionlab.json"
    legacy = {k: v for k, v in json.loads(meta.read_text()).items() if k != "weights_sha256"}
    meta.write_text(json.dumps(legacy))  # saved before the file fingerprint existed: the reader still says why
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        FusionModel.from_pretrained(tmp_path / "a", encoder=tiny_encoder("bert"))
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "num_layers": 7}))
    with pytest.raises(CheckpointError, match="7 layers"):
        FusionModel.from_pretrained(tmp_path / "a", encoder=tiny_encoder("bert"))


def test_interrupted_save_leaves_no_checkpoint(tmp_path, monkeypatch):
    model = trained_like()
    import fusionlab.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "fusions" / "f1")
    assert list((tmp_path / "fusions").iterdir()) == []
