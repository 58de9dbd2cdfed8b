"""Parameter merging of bottleneck adapters: the identities the methods must satisfy, on real adapter modules."""

from __future__ import annotations

import pytest
import torch

from fusionlab.composition.merging import MERGE_METHODS, MergeOptions, _ties, merge_adapters
from tests.conftest import tiny_encoder
from tests.test_model import build, perturb_adapters


def trained_manager():
    """Adapters a (size 8), b (size 16), c (size 8) with non-initial weights, in a real tiny model."""
    model = build(tiny_encoder("bert")).eval()
    perturb_adapters(model)
    with torch.no_grad():
        for adapter in model.adapter_manager.adapters.values():
            for layer in adapter.layers:
                layer.down.weight.normal_(std=0.3)
    return model


def state(manager, name):
    return manager.adapters[name].state_dict()


def assert_same(left, right):
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=0, atol=0)


def test_averaging_identical_adapters_gives_that_adapter():
    model = trained_manager()
    manager = model.adapter_manager
    manager.add_adapter("a2", manager.configs["a"])
    manager.adapters["a2"].load_state_dict(state(manager, "a"))
    merge_adapters(manager, ["a", "a2"], "average", "avg")
    assert_same(state(manager, "avg"), state(manager, "a"))
    hidden = torch.randn(5, manager.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # and it runs: every layer changes a hidden state as the adapter it came from does
        for merged, original in zip(manager.adapters["avg"].layers, manager.adapters["a"].layers):
            torch.testing.assert_close(merged.eval()(hidden), original.eval()(hidden), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["ties", "dare", "average"])
def test_one_adapter_merges_to_itself_when_everything_is_kept(method):
    manager = trained_manager().adapter_manager
    merge_adapters(manager, ["a"], method, "one", MergeOptions(density=1.0))
    assert_same(state(manager, "one"), state(manager, "a"))


def test_dare_with_one_adapter_keeps_entries_rescaled():
    manager = trained_manager().adapter_manager
    merge_adapters(manager, ["a"], "dare", "dropped", MergeOptions(density=0.5, seed=3))
    merged, original = state(manager, "dropped"), state(manager, "a")
    for key in merged:
        kept = merged[key] != 0
        torch.testing.assert_close(merged[key][kept], original[key][kept] * 2)  # survivors rescaled by 1/density
    weight = merged["layers.0.down.weight"]
    assert 0.4 < (weight != 0).float().mean() < 0.6  # about half dropped
    merge_adapters(manager, ["a"], "dare", "again", MergeOptions(density=0.5, seed=3))
    assert_same(state(manager, "again"), merged)  # seeded: the same merge twice


def test_task_arithmetic_at_one_over_n_is_the_average():
    manager = trained_manager().adapter_manager
    merge_adapters(manager, ["a", "c"], "task_arithmetic", "ta", MergeOptions(scale=0.5))
    merge_adapters(manager, ["a", "c"], "average", "avg")
    for key, value in state(manager, "ta").items():
        torch.testing.assert_close(value, state(manager, "avg")[key])


def test_ties_trims_elects_a_sign_and_averages_the_agreeing_entries():
    first = torch.tensor([3.0, -2.0, 0.1, 1.0])
    second = torch.tensor([1.0, 4.0, -0.2, -3.0])
    merged = _ties([first, second], MergeOptions(density=0.5), torch.Generator())
    # trimmed to the 2 largest magnitudes: [3, -2, 0, 0] and [0, 4, 0, -3]; signs elected: +, +, 0, -
    torch.testing.assert_close(merged, torch.tensor([3.0, 4.0, 0.0, -3.0]))


def test_adapters_that_do_not_line_up_are_refused():
    manager = trained_manager().adapter_manager
    with pytest.raises(ValueError, match="differ in size, non-linearity or placement"):
        merge_adapters(manager, ["a", "b"], "average", "bad")
    with pytest.raises(ValueError, match="unknown merging method 'mean'"):
        merge_adapters(manager, ["a", "c"], "mean", "bad")
    manager.configs["c"].placement = "pfeiffer"  # same shape, but it reads LayerNorm(h + x): not the same function
    with pytest.raises(ValueError, match="placement"):
        merge_adapters(manager, ["a", "c"], "average", "bad")
    with pytest.raises(ValueError, match="density must be in"):
        MergeOptions(density=0)
    assert set(MERGE_METHODS) == {"average", "task_arithmetic", "ties", "dare", "linear"}


def test_the_linear_merge_needs_one_coefficient_per_adapter():
    manager = trained_manager().adapter_manager
    with pytest.raises(ValueError, match="one coefficient per adapter"):
        merge_adapters(manager, ["a", "c"], "linear", "lin", MergeOptions(coefficients=(1.0,)))
    with pytest.raises(ValueError, match="finite"):
        MergeOptions(coefficients=(float("nan"), 1.0))
    merge_adapters(manager, ["a", "c"], "linear", "halves", MergeOptions(coefficients=(0.5, 0.5)))
    merge_adapters(manager, ["a", "c"], "average", "avg")
    for key, value in state(manager, "halves").items():
        torch.testing.assert_close(value, state(manager, "avg")[key])  # 1/N each is the plain average


def test_an_adapter_cannot_take_the_name_of_a_torch_module_method():
    manager = trained_manager().adapter_manager
    with pytest.raises(ValueError, match="'half' cannot name an adapter"):
        manager.add_adapter("half", manager.configs["a"])
