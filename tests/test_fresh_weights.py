"""A forward pass always computes with the weights as they are now, whatever route changed them.

The fused AdamW that transformers' Trainer picks by default and edits through ``p.data`` change a parameter
without bumping its version counter, so caches keyed on version counters once served the weights of the
first dev evaluation to every later one. Each route below changes the weights after a no_grad evaluation;
the next no_grad evaluation must agree with a grad-enabled pass and with a model built from the new weights.
"""

from __future__ import annotations

import pytest
import torch

from fusionlab.adapters.layer import factor_stacked, stack_adapters
from fusionlab.training.loop import _FusionlabCallback
from tests.conftest import tiny_encoder
from tests.test_model import batch, build, perturb_adapters

ROUTES = ["adamw_fused", "adamw_foreach", "adamw_single", "data_copy", "data_mul", "load_state_dict", "restore_best"]
SHORT, LONG = (7, 4), (40, 40)  # 11 tokens: attention unfolded; 80 tokens: folded (see AttentionFusion._may_fold)


def _model(heads: int = 1):
    model = build(tiny_encoder("bert"), heads=heads)
    perturb_adapters(model)
    model.train_fusion_only()
    model.adapter_manager.freeze(["a"], frozen=False)  # an adapter learns too: its stack must follow
    return model.eval()


def _logits(model, ids, mask, grad: bool):
    with torch.set_grad_enabled(grad):
        return model(input_ids=ids, attention_mask=mask, adapter_names=["a", "b", "c"]).logits.detach()


def _change(model, route: str, ids, mask) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    if route.startswith("adamw"):
        kind = {"adamw_fused": {"fused": True}, "adamw_foreach": {"foreach": True}, "adamw_single": {"foreach": False}}
        optimizer = torch.optim.AdamW(params, lr=0.05, **kind[route])
        model.train()
        loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1])).loss
        loss.backward()
        optimizer.step()
        model.eval()
    elif route == "data_copy":
        for p in params:
            p.data.copy_(torch.randn_like(p) * 0.3)
    elif route == "data_mul":
        for p in params:
            p.data.mul_(-1.7)
    elif route == "load_state_dict":
        state = {k: torch.randn_like(v) * 0.3 for k, v in model.state_dict().items() if "fusion" in k or ".a." in k}
        model.load_state_dict(state, strict=False)
    elif route == "restore_best":
        callback = _FusionlabCallback(model, None, None, None)  # type: ignore[arg-type]
        callback.best_state = {n: torch.randn_like(p) * 0.3 for n, p in model.named_parameters() if p.requires_grad}
        callback.restore_best()


@pytest.mark.parametrize("lengths", [SHORT, LONG], ids=["unfolded", "folded"])
@pytest.mark.parametrize("route", ROUTES)
def test_no_grad_evaluation_follows_every_weight_update(route, lengths):
    model = _model()
    ids, mask = batch(lengths=lengths)
    before = _logits(model, ids, mask, grad=False)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)  # whatever inference_mode could leave behind
    _change(model, route, ids, mask)
    after = _logits(model, ids, mask, grad=False)
    assert not torch.allclose(after, before), "the route did not change the weights"
    torch.testing.assert_close(after, _logits(model, ids, mask, grad=True))
    fresh = build(tiny_encoder("bert"), heads=1).eval()  # brand-new tensors: nothing can be remembered
    fresh.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
    torch.testing.assert_close(after, _logits(fresh, ids, mask, grad=False))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_moving_dtype_after_an_evaluation_computes_in_the_new_dtype(dtype):
    model = _model()
    ids, mask = batch(lengths=LONG)
    _logits(model, ids, mask, grad=False)
    model.to(dtype)
    after = _logits(model, ids, mask, grad=False)
    assert after.dtype == dtype
    torch.testing.assert_close(after, _logits(model, ids, mask, grad=True))


def test_both_attention_paths_are_taken_and_agree():
    """The short batch runs unfolded and the long one folded; each agrees with the differentiable path."""
    model = _model()
    layer = model.fusion_layers[0]
    names = ["a", "b", "c"]
    for lengths, folds in ((SHORT, False), (LONG, True)):
        rows = sum(lengths)
        hidden = torch.randn(rows, model.hidden_size)
        blocks = [model.adapter_manager.adapters[n].layers[0] for n in names]
        with torch.no_grad():
            assert layer._may_fold(rows, factor_stacked(stack_adapters(blocks), hidden)) is folds
        ids, mask = batch(lengths=lengths)
        torch.testing.assert_close(_logits(model, ids, mask, False), _logits(model, ids, mask, True))
