"""Activation (gradient) checkpointing: the adapters and fusion inside checkpointed layers get the same
gradients as without it, directly and through transformers' Trainer."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig, TrainingConfig
from fusionlab.data import make_collator
from fusionlab.training.loop import LoopHooks, run_training
from tests.ddp_fusion_step import batch, build


def _gradients(
    checkpointing: bool, placement: str = "ffn_output"
) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    model = build()
    for config in model.adapter_manager.configs.values():
        config.placement = placement  # pfeiffer: the recomputed layers need the block's input again
    if checkpointing:
        model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing is checkpointing
    out = model(**batch(), adapter_names=["a", "b"], output_fusion_weights=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return grads, out.fusion_weights


@pytest.mark.parametrize("placement", ["ffn_output", "pfeiffer"])
def test_checkpointed_gradients_equal_the_plain_ones(placement) -> None:
    plain, plain_weights = _gradients(False, placement)
    checkpointed, weights = _gradients(True, placement)
    assert plain.keys() == checkpointed.keys() and any("fusion_layers" in n for n in plain)
    for name, grad in plain.items():
        assert grad.abs().sum() > 0, f"{name} got no gradient"
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5)
    # the weights are collected once (in the forward pass), not again when the backward pass recomputes a layer
    assert len(weights) == len(plain_weights) == 2
    for a, b in zip(weights, plain_weights):
        torch.testing.assert_close(a, b)


def test_reentrant_checkpointing_is_refused() -> None:
    with pytest.raises(ValueError, match="use_reentrant=False"):
        build().gradient_checkpointing_enable({"use_reentrant": True})


@pytest.mark.slow
def test_trainer_with_gradient_checkpointing_trains_the_fusion(default_encoder, tokenizer) -> None:
    """``TrainingConfig(gradient_checkpointing=True)`` → Trainer's ``activation_checkpointing`` → the model's
    own enable: the real encoder checkpoints its layers and the fusion still learns."""
    adapters = {name: AdapterConfig(adapter_size=8, init_std=0.2) for name in ("a", "b")}
    model = FusionModel(
        ModelConfig(), FusionConfig(adapter_names=["a", "b"]), AdapterManager(384, adapters), encoder=default_encoder
    )
    model.train_fusion_only()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    texts = ["a fine film", "a dull film", "great acting", "poor acting"] * 4
    rows = tokenizer(texts, truncation=True, max_length=16)
    data = Dataset.from_dict({**rows, "labels": [0, 1, 0, 1] * 4})
    config = TrainingConfig(max_steps=2, per_device_train_batch_size=4, learning_rate=1e-2, gradient_checkpointing=True)
    result = run_training(
        model, data, make_collator(tokenizer), config, LoopHooks(lambda: {"accuracy": 0.5}, "accuracy")
    )
    assert result.steps == 2
    assert model.is_gradient_checkpointing
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("fusion_layers" in n for n in changed)
