import math

import pytest
import torch

from fusionlab.fusion import AttentionFusion, AverageFusion, WeightedFusion


def naive_attention(layer: AttentionFusion, query, outputs):
    """The textbook formula: project every adapter output through key and value, per head."""
    heads, dim = layer.num_attention_heads, layer.head_dim
    q = layer.query(query).view(*query.shape[:-1], heads, dim)  # [M, h, d]
    k = layer.key(outputs).view(*outputs.shape[:-1], heads, dim)  # [M, N, h, d]
    v = layer.value(outputs).view(*outputs.shape[:-1], heads, dim)
    scores = torch.einsum("mhd,mnhd->mhn", q, k) / (math.sqrt(dim) * layer.temperature)
    weights = scores.softmax(-1)
    fused = torch.einsum("mhn,mnhd->mhd", weights, v).reshape(query.shape)
    return fused, weights


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_reassociated_attention_equals_naive_formula(heads, temperature):
    torch.manual_seed(1)
    # float64 so that the comparison measures the algebra, not float32 rounding
    layer = AttentionFusion(64, 5, num_attention_heads=heads, temperature=temperature).double().eval()
    for p in layer.parameters():  # move far from the identity/zero init so every term matters
        torch.nn.init.normal_(p, std=0.3)
    query, outputs = torch.randn(11, 64, dtype=torch.double), torch.randn(11, 5, 64, dtype=torch.double)
    expected, expected_w = naive_attention(layer, query, outputs)
    got, got_w = layer.fuse_deltas(query, outputs, None)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_w, expected_w, atol=1e-5, rtol=1e-5)
    # the residual path (what the model uses) is the same computation on a_i = h + d_i
    residual = torch.randn(11, 64, dtype=torch.double)
    via_residual, w2 = layer.fuse_deltas(query, outputs - residual[:, None], residual)
    torch.testing.assert_close(via_residual, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w2, expected_w, atol=1e-5, rtol=1e-5)


def test_attention_weights_shape_and_notebook_call():
    layer = AttentionFusion(hidden_size=48, num_adapters=3, num_attention_heads=8, dropout=0.1)
    outputs = [torch.randn(2, 10, 48) for _ in range(3)]
    fused = layer(outputs)
    assert isinstance(fused, torch.Tensor) and fused.shape == (2, 10, 48)
    res = layer.eval().fuse(outputs, query=torch.randn(2, 10, 48))
    assert res.weights.shape == (2, 10, 8, 3)
    torch.testing.assert_close(res.weights.sum(-1), torch.ones(2, 10, 8))


def test_attention_with_identity_value_and_equal_outputs_returns_them():
    layer = AttentionFusion(16, 4).eval()
    same = torch.randn(3, 16)
    fused = layer([same] * 4)
    torch.testing.assert_close(fused, same)
    assert layer.regularization_loss().item() == 0.0


def test_subset_weights_are_renormalised():
    torch.manual_seed(0)
    layer = AttentionFusion(32, 4, num_attention_heads=2).eval()
    for p in (layer.query.weight, layer.key.weight):
        torch.nn.init.normal_(p, std=0.5)
    query, outputs = torch.randn(6, 32), torch.randn(6, 4, 32)
    _, full = layer.fuse_deltas(query, outputs, None)
    keep = [0, 2]
    _, sub = layer.fuse_deltas(query, outputs[:, keep], None, adapter_indices=keep)
    torch.testing.assert_close(sub, full[..., keep] / full[..., keep].sum(-1, keepdim=True))


def test_weighted_fusion_softmax_and_subset():
    layer = WeightedFusion(8, 3, learnable_weights=True, weight_initialization="uniform")
    torch.testing.assert_close(torch.softmax(layer.fusion_weights, 0), torch.full((3,), 1 / 3))
    with torch.no_grad():
        layer.fusion_weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
    outputs = torch.randn(5, 3, 8)
    fused, weights = layer.eval().fuse_deltas(outputs.mean(1), outputs, None)
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    torch.testing.assert_close(fused, torch.einsum("n,mnh->mh", w, outputs))
    assert weights.shape == (5, 1, 3)
    sub = layer.adapter_weights([0, 2])
    torch.testing.assert_close(sub, w[[0, 2]] / w[[0, 2]].sum())


def test_weighted_fusion_initialisations_and_fixed_weights():
    target = WeightedFusion(8, 4, weight_initialization="target")
    assert torch.softmax(target.fusion_weights, 0)[0].item() == pytest.approx(0.5)
    fixed = WeightedFusion(8, 4, learnable_weights=False)
    assert not list(fixed.parameters())
    with pytest.raises(ValueError, match="weight_initialization"):
        WeightedFusion(8, 2, weight_initialization="xavier")


def test_average_fusion_is_the_mean():
    outputs = [torch.randn(2, 4, 6) for _ in range(3)]
    torch.testing.assert_close(AverageFusion(6, 3)(outputs), torch.stack(outputs).mean(0))


def test_bad_calls_raise_clear_errors():
    layer = AttentionFusion(16, 3)
    with pytest.raises(ValueError, match="expected 3"):
        layer([torch.randn(2, 16)] * 2)
    with pytest.raises(ValueError, match="hidden size 8"):
        layer([torch.randn(2, 8)] * 3)
    with pytest.raises(ValueError, match="same shape"):
        layer([torch.randn(2, 16), torch.randn(3, 16), torch.randn(2, 16)])
    with pytest.raises(ValueError, match="divide"):
        AttentionFusion(10, 2, num_attention_heads=3)
