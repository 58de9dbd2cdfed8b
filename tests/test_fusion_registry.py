"""A fusion method is one registration: a fourth one, registered at run time, is accepted by configs, built by
the model, offered by the composition lab, the Train page and the CLI, and read by the Playground from the facts
on its class — without editing any of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusionlab import AdapterConfig, AdapterManager, FusionConfig, FusionModel, ModelConfig
from fusionlab.composition.methods import methods
from fusionlab.fusion import AverageFusion, WeightedFusion
from fusionlab.fusion.registry import fusion_class, fusion_methods, register_fusion, unregister_fusion

PAGES = Path(__file__).resolve().parents[1] / "app_pages"


class MedianFusion(AverageFusion):
    """A made-up fourth method: fixed weights like average, but with heads (to see the facts at work)."""

    method = "median-test"
    has_heads = True
    uses_temperature = False


@pytest.fixture
def fourth_method():
    register_fusion(MedianFusion)
    yield MedianFusion
    unregister_fusion(MedianFusion.method)


def test_a_registered_method_is_accepted_built_and_offered(fourth_method):
    from tests.conftest import tiny_encoder

    assert fusion_methods()[-1] == "median-test" and fusion_class("median-test") is MedianFusion
    config = FusionConfig(fusion_method="median-test", adapter_names=["a", "b"])
    manager = AdapterManager(32, {n: AdapterConfig(adapter_size=4, task_name=n) for n in ("a", "b")})
    model = FusionModel(ModelConfig(), config, manager, encoder=tiny_encoder("bert")).eval()
    assert isinstance(model.fusion_layers[0], MedianFusion)
    ids = torch.randint(5, 100, (2, 7))
    assert model(input_ids=ids, attention_mask=torch.ones_like(ids), adapter_names=["a", "b"]).logits.shape == (2, 2)
    assert "fusion:median-test" in methods()  # the composition lab compares it too

    from fusionlab.cli import build_parser

    args = build_parser().parse_args(["train-fusion", "rte", "--adapters", "rte,mnli", "--method", "median-test"])
    assert args.method == "median-test"

    unregister_fusion("median-test")
    with pytest.raises(ValueError, match="fusion_method"):
        FusionConfig(fusion_method="median-test", adapter_names=["a"])
    with pytest.raises(ValueError, match="built-in"):
        unregister_fusion("attention")
    register_fusion(MedianFusion)  # for the fixture's own clean-up


def test_the_train_page_offers_a_registered_method_with_its_own_options(fourth_method, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FUSIONLAB_HOME", str(tmp_path / "ws"))
    at = AppTest.from_file(str(PAGES / "train.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert "median-test" in at.selectbox(key="fusion_method").options
    at.selectbox(key="fusion_method").set_value("median-test").run()
    assert not at.exception
    assert not at.selectbox(key="fusion_heads").disabled  # it declares heads
    assert at.number_input(key="fusion_temperature").disabled  # and no temperature
    assert at.number_input(key="fusion_value_reg").disabled  # and no value projection
    at.selectbox(key="fusion_method").set_value("attention").run()
    assert not at.number_input(key="fusion_value_reg").disabled


def test_the_playground_reads_the_facts_from_the_class(fourth_method):
    from fusionlab.dashboard.inference import Predictor

    class Info:
        method = "median-test"
        adapters = ("a", "b")

    predictor = Predictor.__new__(Predictor)  # only the facts are under test: no model is loaded
    predictor.info = Info()
    predictor.model = type("M", (), {"fusion_layers": [MedianFusion(8, 2)]})()
    assert predictor._learned_weights(("a", "b")) is None  # fixed weights: nothing learned to show


class SharpFusion(WeightedFusion):
    """A made-up learned method (a weighted fusion under another name): Mechanics must demonstrate it."""

    method = "sharp-test"


def test_mechanics_demonstrates_a_registered_learned_method(fourth_method, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from fusionlab.dashboard import mechanics

    register_fusion(SharpFusion)
    try:
        assert "sharp-test" in mechanics.methods() and "median-test" not in mechanics.methods()  # learns nothing
        result = mechanics.fuse(mechanics.random_outputs(3, seed=0), "sharp-test", temperature=0.5)
        assert result.layer_source.startswith("a fresh sharp-test fusion layer (small random logits")
        assert result.weights.shape[-1] == 3
        monkeypatch.setenv("FUSIONLAB_HOME", str(tmp_path / "ws"))
        at = AppTest.from_file(str(PAGES / "mechanics.py"), default_timeout=60)
        at.run()
        assert "sharp-test" in at.radio[1].options
        at.radio[1].set_value("sharp-test").run()
        assert not at.exception, at.exception
        assert at.selectbox[0].disabled  # no heads: the heads picker is off, read from the class
    finally:
        unregister_fusion(SharpFusion.method)
