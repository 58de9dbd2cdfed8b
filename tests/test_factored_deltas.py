"""The fast fused path: factored deltas and the folded query/key must stay exact and follow every update."""

import pytest
import torch

from fusionlab.adapters import BottleneckAdapter, stack_adapters
from fusionlab.adapters.layer import factor_stacked
from fusionlab.fusion import AttentionFusion, AverageFusion, WeightedFusion
from tests.conftest import tiny_encoder
from tests.test_model import batch, build, perturb_adapters


def _factored(hidden=32, sizes=(4, 16, 9), act="gelu", rows=7):
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(hidden, size, act).double() for size in sizes]
    for a in adapters:
        torch.nn.init.normal_(a.up.weight)
        torch.nn.init.normal_(a.up.bias)
    x = torch.randn(rows, hidden, dtype=torch.double)
    deltas = torch.stack([a.delta(x) for a in adapters], dim=1)  # [M, N, H], one by one
    return factor_stacked(stack_adapters(adapters), x), deltas


def test_factored_deltas_match_one_by_one():
    factored, deltas = _factored()
    assert factored.shape == deltas.shape
    torch.testing.assert_close(factored.materialize(), deltas)
    vectors = torch.randn(7, 3, 32, dtype=torch.double)
    torch.testing.assert_close(factored.dot(vectors), torch.einsum("mkh,mnh->mkn", vectors, deltas))
    weights, base = torch.rand(7, 3, 3, dtype=torch.double), torch.randn(7, 3, 32, dtype=torch.double)
    expected = torch.einsum("mkn,mnh->mkh", weights, deltas)
    torch.testing.assert_close(factored.mix(weights), expected)
    torch.testing.assert_close(factored.mix(weights, base), base + expected)


@pytest.mark.parametrize(
    "layer",
    [
        AttentionFusion(32, 3, num_attention_heads=1, dropout=0.3),
        AttentionFusion(32, 3, num_attention_heads=4, temperature=0.5),
        WeightedFusion(32, 3, weight_initialization="normal"),
        AverageFusion(32, 3),
    ],
    ids=["attention-1", "attention-4", "weighted", "average"],
)
@pytest.mark.parametrize("grad", [False, True])
def test_fusion_of_factored_deltas_equals_fusion_of_tensors(layer, grad):
    factored, deltas = _factored()
    layer = layer.double().eval()
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.3)
    query, residual = torch.randn(7, 32, dtype=torch.double), torch.randn(7, 32, dtype=torch.double)
    with torch.set_grad_enabled(grad):
        for res in (residual, None):
            fused, weights = layer.fuse_deltas(query, factored, res, adapter_indices=[2, 0, 1])
            expected, expected_w = layer.fuse_deltas(query, deltas, res, adapter_indices=[2, 0, 1])
            torch.testing.assert_close(fused, expected)
            torch.testing.assert_close(weights, expected_w)


def test_folded_query_key_follows_weight_updates():
    torch.manual_seed(0)
    layer = AttentionFusion(16, 3).double().eval()
    for p in (layer.query.weight, layer.query.bias, layer.key.weight):
        torch.nn.init.normal_(p, std=0.5)
    query, deltas = torch.randn(5, 16, dtype=torch.double), torch.randn(5, 3, 16, dtype=torch.double)
    with torch.no_grad():
        before = layer.fuse_deltas(query, deltas, None)[1]
        with torch.enable_grad():  # learning query/key: the unfolded, differentiable path
            torch.testing.assert_close(layer.fuse_deltas(query, deltas, None)[1], before)
        layer.key.weight.mul_(-1.0)  # in place: only the version counter tells
        after = layer.fuse_deltas(query, deltas, None)[1]
    layer.query.bias = torch.nn.Parameter(layer.query.bias.detach() + 1.0)  # a new tensor
    with torch.no_grad():
        replaced = layer.fuse_deltas(query, deltas, None)[1]
    assert not torch.allclose(after, before)
    assert not torch.allclose(replaced, after)
    reference = AttentionFusion(16, 3).double().eval()
    reference.load_state_dict(layer.state_dict())
    reference.requires_grad_(True)
    torch.testing.assert_close(replaced, reference.fuse_deltas(query, deltas, None)[1].detach())


def test_stack_cache_follows_replaced_parameters():
    model = build(tiny_encoder("bert")).eval()
    perturb_adapters(model)
    ids, mask = batch()
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
        up = model.adapter_manager.adapters["b"].layers[0].up
        up.weight = torch.nn.Parameter(torch.zeros_like(up.weight))  # a new tensor, no in-place version bump
        up.bias = torch.nn.Parameter(torch.zeros_like(up.bias))
        cached = model.adapter_manager.layer_deltas(torch.randn(3, 32), ["a", "b"], 0)
        assert torch.all(cached[:, 1] == 0)
        block = model.adapter_manager.adapters["a"].layers[0]
        block.up = torch.nn.Linear(block.adapter_size, 32)  # a whole new module
        torch.nn.init.zeros_(block.up.weight)
        torch.nn.init.constant_(block.up.bias, 2.0)
        cached = model.adapter_manager.layer_deltas(torch.randn(3, 32), ["a", "b"], 0)
    assert torch.all(cached[:, 0] == 2.0)


def test_caches_filled_under_inference_mode_serve_training():
    """Weights stacked and folded under inference_mode must not be inference tensors (autograd refuses those)."""
    model = build(tiny_encoder("bert"), heads=1)
    perturb_adapters(model)
    ids, mask = batch()
    with torch.inference_mode():
        model.eval()(input_ids=ids, attention_mask=mask)
    model.train_fusion_only()
    model.fusion_layers[1].requires_grad_(False)  # frozen (cached paths) on states that carry a gradient
    model.train()(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1])).loss.backward()
    assert model.fusion_layers[0].query.weight.grad is not None


def test_force_fusion_runs_fusion_over_one_adapter():
    model = build(tiny_encoder("bert")).eval()
    perturb_adapters(model)
    ids, mask = batch()
    with torch.no_grad():
        out = model(
            input_ids=ids, attention_mask=mask, adapter_names=["b"], force_fusion=True, output_fusion_weights=True
        )
        single = model(input_ids=ids, attention_mask=mask, adapter_names=["b"])
    assert out.fusion_weights is not None and out.fusion_weights[0].shape[-1] == 1
    # softmax over one adapter is 1 and the value starts as the identity: fusion over one adapter is that adapter
    torch.testing.assert_close(out.last_hidden_state, single.last_hidden_state)
    with torch.no_grad():
        model.fusion_layers[0].value.weight.mul_(0.5)
        halved = model(input_ids=ids, attention_mask=mask, adapter_names=["b"], force_fusion=True)
    assert not torch.allclose(halved.last_hidden_state, single.last_hidden_state)  # the fusion path did run
    model.add_adapter("d", model.adapter_manager.configs["a"])
    with pytest.raises(ValueError, match="force_fusion=True"):
        model(input_ids=ids, attention_mask=mask, adapter_names=["d"], force_fusion=True)


@pytest.mark.parametrize("heads", [1, 2])
def test_folded_model_pass_matches_unfolded_and_follows_updates(heads):
    """Under no_grad the model folds the fused products (fresh each call); with grad (fusion learning) it does not."""
    model = build(tiny_encoder("bert"), heads=heads).double().eval()
    perturb_adapters(model)
    for layer in model.fusion_layers:
        for p in layer.parameters():
            torch.nn.init.normal_(p, std=0.3)
    ids, mask = batch(lengths=(40, 40))  # enough tokens for the one-head fold (AttentionFusion._may_fold)

    def both():
        with torch.no_grad():
            folded = model(input_ids=ids, attention_mask=mask, output_fusion_weights=True)
        plain = model(input_ids=ids, attention_mask=mask, output_fusion_weights=True)
        torch.testing.assert_close(folded.last_hidden_state, plain.last_hidden_state.detach())
        for w, v in zip(folded.fusion_weights, plain.fusion_weights):
            torch.testing.assert_close(w, v.detach())
        return folded.last_hidden_state

    first = both()
    with torch.no_grad():
        model.adapter_manager.adapters["c"].layers[1].up.weight.mul_(-2.0)
    second = both()
    with torch.no_grad():
        model.fusion_layers[1].key.weight.mul_(-1.0)
    third = both()
    assert not torch.allclose(first, second) and not torch.allclose(second, third)
