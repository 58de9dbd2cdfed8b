import pytest
import torch

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig
from tests.conftest import tiny_encoder

ARCHS = ["bert", "roberta", "distilbert"]


def build(encoder, method="attention", names=("a", "b", "c"), sizes=(8, 16, 8), heads=2, **fusion_kw):
    hidden = encoder.config.hidden_size
    configs = {n: AdapterConfig(adapter_size=s, task_name=n) for n, s in zip(names, sizes)}
    manager = AdapterManager(hidden, configs)
    fusion = FusionConfig(fusion_method=method, adapter_names=list(names), num_attention_heads=heads, **fusion_kw)
    return FusionModel(ModelConfig(model_name_or_path="tiny"), fusion, manager, encoder=encoder)


def batch(vocab=120, lengths=(7, 4)):
    torch.manual_seed(3)
    ids = torch.randint(5, vocab, (len(lengths), max(lengths)))
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids, mask


def perturb_adapters(model, std=0.5):
    torch.manual_seed(7)
    with torch.no_grad():
        for adapter in model.adapter_manager.adapters.values():
            for layer in adapter.layers:
                layer.up.weight.normal_(std=std)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["attention", "weighted", "average"])
def test_adapters_live_in_every_layer_and_start_as_identity(arch, method):
    model = build(tiny_encoder(arch), method).eval()
    ids, mask = batch()
    base = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    for names in (["a"], ["a", "b", "c"]):
        out = model(input_ids=ids, attention_mask=mask, adapter_names=names)
        torch.testing.assert_close(out.last_hidden_state, base, atol=1e-5, rtol=1e-5)
    perturb_adapters(model)
    changed = model(input_ids=ids, attention_mask=mask, adapter_names=["a", "b", "c"]).last_hidden_state
    assert not torch.allclose(changed, base, atol=1e-3)
    # a plain call of the encoder is never touched by the hooks
    torch.testing.assert_close(model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state, base)


@pytest.mark.parametrize("arch", ARCHS)
def test_fusion_weights_shapes_and_padding_mask(arch):
    model = build(tiny_encoder(arch)).eval()
    perturb_adapters(model)
    ids, mask = batch(lengths=(7, 4))
    out = model(input_ids=ids, attention_mask=mask, adapter_names=["a", "b", "c"], output_fusion_weights=True)
    assert out.logits.shape == (2, 2)
    assert len(out.fusion_weights) == model.num_layers == 2
    for w in out.fusion_weights:
        assert w.shape == (2, 7, 2, 3)
        assert torch.all(w[1, 4:] == 0)  # padding masked out
        torch.testing.assert_close(w[0].sum(-1), torch.ones(7, 2))
        torch.testing.assert_close(w[1, :4].sum(-1), torch.ones(4, 2))
    assert out.adapter_names == ["a", "b", "c"]
    single = model(input_ids=ids, attention_mask=mask, adapter_names=["b"], output_fusion_weights=True)
    assert single.fusion_weights is None


def test_subset_evaluation_renormalises_weights():
    model = build(tiny_encoder("bert"), heads=1).eval()
    perturb_adapters(model)
    for layer in model.fusion_layers:
        torch.nn.init.normal_(layer.query.weight, std=0.5)
        torch.nn.init.normal_(layer.key.weight, std=0.5)
    ids, mask = batch()
    full = model(input_ids=ids, attention_mask=mask, output_fusion_weights=True).fusion_weights[0]
    sub = model(input_ids=ids, attention_mask=mask, adapter_names=["c", "a"], output_fusion_weights=True)
    expected = full[..., [2, 0]] / full[..., [2, 0]].sum(-1, keepdim=True).clamp(min=1e-12)
    # layer 0 sees identical inputs in both passes, so its weights must be the renormalised full weights
    torch.testing.assert_close(sub.fusion_weights[0], expected * mask[:, :, None, None])
    weighted = build(tiny_encoder("bert"), "weighted").eval()
    with torch.no_grad():
        weighted.fusion_layers[0].fusion_weights.copy_(torch.tensor([1.0, 0.0, -1.0]))
    w = weighted(input_ids=ids, attention_mask=mask, adapter_names=["a", "c"], output_fusion_weights=True)
    p = torch.softmax(torch.tensor([1.0, -1.0]), 0)
    torch.testing.assert_close(w.fusion_weights[0][0, 0, 0], p)


def test_gradients_reach_only_trainable_parameters():
    model = build(tiny_encoder("bert"))
    perturb_adapters(model)
    model.train_fusion_only()
    ids, mask = batch()
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1]))
    out.loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("fusion_layers.", "fusion_head.")) for n in trainable)
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None, name
        else:
            assert p.grad is None, name
    assert model.fusion_layers[0].query.weight.grad.abs().sum() > 0

    model.zero_grad(set_to_none=True)
    model.train_adapter_only("b")
    model(input_ids=ids, attention_mask=mask, adapter_names=["b"], labels=torch.tensor([0, 1])).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {
        n for n, p in model.named_parameters() if n.startswith(("adapter_manager.adapters.b.", "heads.b."))
    }


def test_value_regularisation_enters_the_training_loss():
    model = build(tiny_encoder("bert"), value_regularization=0.5)
    with torch.no_grad():
        model.fusion_layers[1].value.weight.add_(0.1)
    ids, mask = batch()
    labels = torch.tensor([0, 1])
    model.eval()
    plain = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    model.train()
    torch.manual_seed(0)
    reg = model.value_regularization_loss()
    assert reg.item() == pytest.approx(0.5 * 0.01 * 32 * 32, rel=1e-4)
    model.model_config.head_dropout = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    trained = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert trained.item() == pytest.approx(plain.item() + reg.item(), rel=1e-4)


def test_adapter_name_errors_are_clear():
    model = build(tiny_encoder("bert"))
    ids, mask = batch()
    with pytest.raises(KeyError, match="no adapter named 'zzz'"):
        model(input_ids=ids, attention_mask=mask, adapter_names=["zzz"])
    with pytest.raises(ValueError, match="empty"):
        model(input_ids=ids, attention_mask=mask, adapter_names=[])
    model.add_adapter("d", AdapterConfig(adapter_size=4, task_name="d"))
    with pytest.raises(ValueError, match="cannot fuse"):
        model(input_ids=ids, attention_mask=mask, adapter_names=["a", "d"])
    with pytest.raises(ValueError, match="hidden size"):
        FusionModel(ModelConfig(), None, AdapterManager(48, {}), encoder=tiny_encoder("bert"))


def test_adapters_and_fusions_added_later_follow_the_models_mode():
    """A model put in eval mode, then given an adapter and a fusion, runs them in eval mode too (no dropout): new
    torch modules start in training mode, and a model that answered differently on every call misleads."""
    hidden = tiny_encoder("bert").config.hidden_size
    model = FusionModel(
        ModelConfig(model_name_or_path="tiny"), None, AdapterManager(hidden, {}), encoder=tiny_encoder("bert")
    )
    model.eval()
    for name in ("a", "b"):
        model.add_adapter(name, AdapterConfig(adapter_size=8, task_name=name))
    model.add_fusion(FusionConfig(adapter_names=["a", "b"], fusion_dropout=0.5))
    assert not [n for n, m in model.named_modules() if m.training]
    model.train()
    model.base_model.eval()  # as transformers loads an encoder: a new adapter must not switch its dropout on
    model.add_adapter("c", AdapterConfig(adapter_size=8, task_name="c"))
    assert model.adapter_manager.adapters["c"].training and model.heads["c"].training
    assert not [n for n, m in model.base_model.named_modules() if m.training]


def test_parameter_breakdown_adds_up():
    model = build(tiny_encoder("distilbert"), "weighted")
    info = model.parameter_breakdown()
    parts = info["base"] + sum(info["adapters"].values()) + info["fusion"] + sum(info["heads"].values())
    assert parts == info["total"] == sum(p.numel() for p in model.parameters())
    assert info["fusion"] == 2 * 3  # one logit per adapter per layer
    assert info["adapters"]["b"] == 2 * (32 * 16 + 16 + 16 * 32 + 32)
    assert info["trainable"] == info["fusion"] + info["heads"]["fusion:a"]


@pytest.mark.slow
def test_default_model_identity_and_fused_inference(default_encoder, tokenizer):
    configs = {
        "sentiment": AdapterConfig(64, "sentiment"),
        "nli": AdapterConfig(64, "nli"),
        "qa": AdapterConfig(128, "qa", "question_answering"),
    }
    model = FusionModel(
        ModelConfig(),
        FusionConfig(adapter_names=list(configs), num_attention_heads=8),
        AdapterManager(384, configs, freeze_adapters=True),
        encoder=default_encoder,
    ).eval()
    assert model.num_layers == 6 and model.hidden_size == 384
    x = tokenizer(["A wonderful film.", "Dull and far too long, I left early."], return_tensors="pt", padding=True)
    with torch.no_grad():
        base = model.base_model(**x).last_hidden_state
        fused = model(**x, adapter_names=list(configs), output_fusion_weights=True)
        single = model(**x, adapter_names=["sentiment"])
    torch.testing.assert_close(fused.last_hidden_state, base, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(single.last_hidden_state, base, atol=1e-4, rtol=1e-4)
    assert fused.fusion_weights[5].shape == (2, x["input_ids"].shape[1], 8, 3)
    assert torch.softmax(fused.logits, -1).shape == (2, 2)
