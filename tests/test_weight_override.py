"""Fusion weights set by hand (the what-if instrument) live in the model's fusion path: an override equal to the
learned weights gives the learned logits exactly; a one-hot override on adapter a gives what fusing a alone
through the same fusion layers gives; the others keep their learned proportions. Real fusion layers on a small
real encoder architecture, with perturbed (non-identity) adapters and fusion layers."""

from __future__ import annotations

import pytest
import torch

from fusionlab.fusion.override import WeightOverride, parse_setting
from tests.conftest import tiny_encoder
from tests.test_composition import trained_fusion
from tests.test_model import batch, build, perturb_adapters


def _logits(model, override=None, names=("a", "b", "c"), **kw):
    ids, mask = batch()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, adapter_names=list(names), fusion_weight_override=override,
                    output_fusion_weights=True, **kw)  # fmt: skip
    return out


def test_an_override_equal_to_the_learned_weights_changes_nothing():
    model = build(tiny_encoder("bert"), "weighted", weight_initialization="normal").eval()
    perturb_adapters(model)
    learned = _logits(model)
    for layer, fusion in enumerate(model.fusion_layers):
        weights = fusion.adapter_weights().tolist()
        same = WeightOverride(dict(zip("abc", weights[:2])), layer=layer)  # two set, the third renormalised
        assert torch.allclose(_logits(model, same).logits, learned.logits, atol=1e-6)


@pytest.mark.parametrize("method", ["attention", "weighted"])
def test_a_one_hot_override_is_that_adapter_alone_through_the_fusion(method):
    model = trained_fusion(method)
    alone = _logits(model, names=["b"], force_fusion=True)  # b alone, through the same fusion layers and head
    one_hot = _logits(model, WeightOverride({"b": 1.0}))
    assert torch.allclose(one_hot.logits, alone.logits, atol=1e-5)
    assert torch.allclose(one_hot.last_hidden_state, alone.last_hidden_state, atol=1e-5)
    learned = _logits(model).last_hidden_state
    assert not torch.allclose(one_hot.last_hidden_state, learned, atol=1e-3)  # and it differs from the learned mix


def test_the_others_keep_their_learned_proportions_and_the_weights_sum_to_one():
    model = trained_fusion("attention")
    learned = _logits(model).fusion_weights
    setting = WeightOverride({"a": 0.6}, layer=1)
    used = _logits(model, setting).fusion_weights
    _, mask = batch()
    real = mask.bool()
    for layer, (before, after) in enumerate(zip(learned, used)):
        if layer != 1:
            assert torch.allclose(before, after, atol=1e-6)  # only the layer named is touched
            continue
        assert torch.allclose(after[real][..., 0], torch.full_like(after[real][..., 0], 0.6))
        assert torch.allclose(after[real].sum(-1), torch.ones_like(after[real][..., 0]), atol=1e-6)
        ratio_before = before[real][..., 1] / before[real][..., 2]
        assert torch.allclose(after[real][..., 1] / after[real][..., 2], ratio_before, rtol=1e-4)


def test_bad_settings_are_refused_in_the_users_words():
    model = trained_fusion("attention")
    with pytest.raises(ValueError, match="cannot set the weight of z"):
        _logits(model, WeightOverride({"z": 0.5}))
    with pytest.raises(ValueError, match=r"sum to 1\.2"):
        WeightOverride({"a": 0.7, "b": 0.5})
    with pytest.raises(ValueError, match="between 0 and 1"):
        WeightOverride({"a": 1.5})
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        _logits(model, WeightOverride({"a": 0.5}, layer=2))
    with pytest.raises(ValueError, match="must sum to 1"):
        _logits(model, WeightOverride({"a": 0.2, "b": 0.2, "c": 0.2}))
    with pytest.raises(ValueError, match="needs the fusion path"):
        _logits(model, WeightOverride({"a": 0.5}), names=["a"])
    assert parse_setting(["a=0.7", " b = 0.1"], layer=3) == WeightOverride({"a": 0.7, "b": 0.1}, layer=2)
    with pytest.raises(ValueError, match="write ADAPTER=WEIGHT"):
        parse_setting(["a0.7"])
