import pytest
import torch

from fusionlab.adapters import AdapterManager, BottleneckAdapter, run_stacked, stack_adapters
from fusionlab.config import AdapterConfig


def test_untrained_adapter_is_exactly_identity():
    adapter = BottleneckAdapter(48, 16)
    x = torch.randn(2, 5, 48)
    assert torch.equal(adapter(x), x)
    assert adapter.down.weight.abs().sum() > 0  # the down-projection is random, only `up` starts at zero


def test_stacked_adapters_of_unequal_sizes_match_one_by_one():
    torch.manual_seed(0)
    adapters = [BottleneckAdapter(32, size, "gelu") for size in (4, 16, 9)]
    for a in adapters:
        torch.nn.init.normal_(a.up.weight)
        torch.nn.init.normal_(a.up.bias)
    x = torch.randn(7, 32)
    stacked = run_stacked(stack_adapters(adapters), x)
    assert stacked.shape == (7, 3, 32)
    for i, a in enumerate(adapters):
        torch.testing.assert_close(stacked[:, i], a.delta(x), atol=1e-5, rtol=1e-5)


def test_stacking_rejects_mixed_activations():
    with pytest.raises(ValueError, match="non-linearity"):
        stack_adapters([BottleneckAdapter(8, 2, "relu"), BottleneckAdapter(8, 2, "tanh")])


def _manager(**kw):
    configs = {
        "sentiment": AdapterConfig(adapter_size=8, task_name="sentiment"),
        "qa": AdapterConfig(adapter_size=16, task_name="qa", task_type="question_answering"),
    }
    return AdapterManager(hidden_size=24, adapter_configs=configs, **kw)


def test_manager_returns_named_outputs_and_selects(capsys):
    manager = _manager()
    x = torch.randn(2, 3, 24)
    assert list(manager(x)) == ["sentiment", "qa"]
    assert list(manager(x, adapter_names=["qa"])) == ["qa"]
    assert manager(x)["qa"].shape == x.shape
    manager.print_adapter_info()
    out = capsys.readouterr().out
    assert "sentiment" in out and "qa" in out and "size=16" in out


def test_manager_freezing_and_errors():
    manager = _manager(freeze_adapters=True)
    assert not any(p.requires_grad for p in manager.parameters())
    manager.freeze(["qa"], frozen=False)
    assert all(p.requires_grad for p in manager.adapters["qa"].parameters())
    assert not any(p.requires_grad for p in manager.adapters["sentiment"].parameters())
    with pytest.raises(KeyError, match="no adapter named 'nli'"):
        manager(torch.randn(1, 2, 24), adapter_names=["nli"])
    with pytest.raises(ValueError, match="already exists"):
        manager.add_adapter("qa", AdapterConfig())


def test_stacked_cache_follows_weight_updates():
    manager = _manager(freeze_adapters=True)
    x = torch.randn(5, 24)
    with torch.no_grad():
        before = manager.layer_deltas(x, ["sentiment", "qa"], 0).clone()
        manager.adapters["qa"].layers[0].up.bias.add_(1.0)
        after = manager.layer_deltas(x, ["sentiment", "qa"], 0)
    torch.testing.assert_close(after[:, 1], before[:, 1] + 1.0)
    torch.testing.assert_close(after[:, 0], before[:, 0])


def test_content_hash_changes_iff_weights_change():
    manager = _manager()
    h = manager.content_hash("qa")
    assert manager.content_hash("qa") == h
    with torch.no_grad():
        manager.adapters["qa"].layers[0].up.weight[0, 0] += 1e-3
    assert manager.content_hash("qa") != h
    assert manager.content_hash("sentiment") != manager.content_hash("qa")


def test_set_num_layers_refuses_trained_adapters():
    manager = _manager()
    manager.set_num_layers(3)
    assert len(manager.adapters["qa"].layers) == 3
    with torch.no_grad():
        manager.adapters["qa"].layers[1].up.weight.fill_(0.1)
    with pytest.raises(ValueError, match="already trained"):
        manager.set_num_layers(6)
