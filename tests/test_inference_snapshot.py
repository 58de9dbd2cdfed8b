"""Inference snapshots answer exactly as the model they were made from, on any adapter subset, and refuse to
train (their kept products would go stale)."""

from __future__ import annotations

import pytest
import torch

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig
from fusionlab.fusion.attention import MAX_SNAPSHOT_FOLDS
from fusionlab.inference_snapshot import freeze_for_inference


def _model(encoder, method: str, names: list[str]) -> FusionModel:
    torch.manual_seed(0)
    manager = AdapterManager(32, {n: AdapterConfig(adapter_size=4, task_name=n) for n in names}, freeze_adapters=True)
    model = FusionModel(
        ModelConfig(), FusionConfig(fusion_method=method, adapter_names=names), manager, encoder=encoder
    )
    with torch.no_grad():
        for param in manager.parameters():
            param.normal_(std=0.1)
        for layer in model.fusion_layers:
            for param in layer.parameters():
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


@pytest.mark.parametrize("method", ["attention", "weighted", "average"])
def test_a_snapshot_answers_as_the_live_model_on_every_subset(method):
    from tests.conftest import tiny_encoder

    names = ["a", "b", "c"]
    live = _model(tiny_encoder("bert"), method, names)
    frozen = freeze_for_inference(_model(tiny_encoder("bert"), method, names))
    generator = torch.Generator().manual_seed(1)
    for batch, tokens in ((1, 9), (4, 40)):  # one sentence (no fold while training) and enough tokens to fold
        ids = torch.randint(5, 120, (batch, tokens), generator=generator)
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        for subset in (names, ["a", "c"], names):  # the second time round the kept products are used
            with torch.no_grad():
                want = live(**inputs, adapter_names=subset, output_fusion_weights=True)
                got = frozen(**inputs, adapter_names=subset, output_fusion_weights=True)
            torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
            for g, w in zip(got.fusion_weights, want.fusion_weights):
                torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert frozen.adapter_manager.stacks  # kept per layer and subset
    assert not any(p.requires_grad for p in frozen.parameters())


def test_a_snapshot_refuses_to_train_and_keeps_few_folds():
    from tests.conftest import tiny_encoder

    frozen = freeze_for_inference(_model(tiny_encoder("bert"), "attention", ["a", "b"]))
    with pytest.raises(RuntimeError, match="inference snapshot"):
        frozen.train()
    frozen.eval()  # eval is fine
    layer = frozen.fusion_layers[0]
    manager = frozen.adapter_manager
    from fusionlab.adapters.layer import factor_stacked, stack_adapters

    hidden = torch.randn(3, 32)
    for _ in range(MAX_SNAPSHOT_FOLDS + 5):  # stacks from outside the snapshot: the kept folds stay bounded
        blocks = [manager.adapters[n].layers[0] for n in ("a", "b")]
        layer.fuse_deltas(hidden, factor_stacked(stack_adapters(blocks), hidden), hidden)
    assert len(layer.folds) <= MAX_SNAPSHOT_FOLDS
