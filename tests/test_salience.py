"""Which words decide: integrated gradients (Captum) for the target adapter alone and for its fusion.

On the pretrained pack's adapters and fusions (the real encoder, real sentences): completeness — the
attributions add up to the class logit's change from the word-free baseline, a change computed here with a
separate forward pass — holds within the stated tolerance for both models; on a dev example where the two
answers differ, the line under the map names the word tokens whose attributions differ most; computing salience
leaves the shared inference snapshot answering exactly as before. The page computes it only when its tab is open.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fusionlab.dashboard.dev_browser import dev_examples
from fusionlab.dashboard.inference import Predictor
from fusionlab.pack import PACK_DIR, install_pack
from fusionlab.prediction import predict
from fusionlab.salience import TOLERANCE, word_free_baseline
from fusionlab.workspace import Workspace
from tests.test_app_pages import open_page

pytestmark = pytest.mark.slow  # the real encoder with the pack's adapters

REVIEW = "The acting was wooden and the plot made no sense, yet I could not stop watching this strange little film."
PAIR = ("The museum closed in 1998 after a fire destroyed its east wing.", "The museum is still open.")


@pytest.fixture(scope="module")
def pack_workspace(tmp_path_factory) -> Workspace:
    workspace = Workspace(tmp_path_factory.mktemp("salience")).ensure()
    install_pack(workspace, PACK_DIR)
    return workspace


def _logit(predictor: Predictor, encoded, input_ids: torch.Tensor, names, force: bool, target: int) -> float:
    """One class logit from a plain forward pass (the input's mask and segments, ``input_ids`` as given)."""
    inputs = {**encoded.inputs, "input_ids": input_ids}
    with torch.no_grad():
        out = predictor.model(**inputs, adapter_names=list(names), force_fusion=force)
    return float(out.logits[0, target])


@pytest.mark.parametrize(("fusion", "text", "pair"), [("imdb-attention", REVIEW, None), ("rte-attention", *PAIR)])
def test_attributions_add_up_to_the_logit_change_for_both_models(pack_workspace, fusion, text, pair):
    predictor = Predictor(pack_workspace, fusion)
    result = predictor.salience(text, pair)
    comparison = predictor.compare(text, pair)
    target = comparison.fused.labels.index(result.label)
    assert result.label == comparison.fused.label  # both explain the fusion's answer
    encoded = predictor.encode(text, pair)
    ids = encoded.inputs["input_ids"]
    tok = predictor.tokenizer
    baseline = word_free_baseline(ids, tok.all_special_ids, tok.pad_token_id)
    assert (baseline != ids).sum() == sum(not t.startswith("[") for t in encoded.tokens)  # every word, and only them
    for attribution, names, force in (
        (result.single, [predictor.info.target], False),
        (result.fused, list(predictor.info.adapters), True),
    ):
        change = _logit(predictor, encoded, ids, names, force, target) - _logit(
            predictor, encoded, baseline, names, force, target
        )
        assert attribution.logit_change == pytest.approx(change, abs=1e-4)
        assert abs(attribution.values.sum() - change) <= TOLERANCE * max(abs(change), 1.0)
        assert attribution.values.shape == (len(encoded.tokens),)
        assert np.abs(attribution.values).max() > 0.01  # words do move the logit


def test_a_disagreement_names_the_tokens_the_two_models_read_differently(pack_workspace, shared_data_dir):
    predictor = Predictor(pack_workspace, "rte-attention")
    examples = [e for e in dev_examples(predictor, str(shared_data_dir), limit=80) if e.disagree]
    assert examples, "the pack's RTE fusion and adapter agree on the first 80 dev examples: nothing to show"
    example = min(examples, key=lambda e: len(e.text) + len(e.pair or ""))
    before = predict(predictor.model, predictor.encode(example.text, example.pair), list(predictor.info.adapters), True)
    result = predictor.salience(example.text, example.pair)
    assert result.label == example.fused != example.single
    named = result.differences(3)
    gaps = np.abs(result.fused.values - result.single.values)
    words = [i for i, t in enumerate(result.tokens) if not t.startswith("[")]
    assert named[0].position == max(words, key=lambda i: gaps[i])  # the largest difference first
    assert [d.position for d in named] == sorted(words, key=lambda i: -gaps[i])[:3]
    line = result.describe_differences()
    assert all(f"“{d.token}”" in line for d in named) and f"“{example.fused}”" in line
    after = predict(predictor.model, predictor.encode(example.text, example.pair), list(predictor.info.adapters), True)
    assert np.array_equal(before[0].probabilities, after[0].probabilities)  # the shared snapshot is unchanged


def test_the_playground_computes_salience_only_when_its_tab_is_open(tiny_workspace):
    from fusionlab.dashboard.widgets import load_predictor

    saliences = load_predictor(tiny_workspace, "rte-attention")._saliences
    before = saliences.calls
    at = open_page("playground.py", tiny_workspace.root, {"fusion": "rte-attention"})
    assert not at.exception and saliences.calls == before  # another tab open: nothing computed
    at = open_page("playground.py", tiny_workspace.root, {"fusion": "rte-attention", "view": "Which words decide"})
    assert not at.exception and not at.error
    assert saliences.calls == before + 1
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if "Which tokens push" in c.proto.spec)
    heat = chart["data"][0]
    assert heat["zmin"] == -heat["zmax"] and heat["zmid"] == 0  # one scale, symmetric around 0
    assert [t for t in chart["layout"]["yaxis"]["ticktext"]] == ["rte alone", "fusion"]
    assert any("differs most between rte alone and the fusion" in c.value for c in at.caption)
    assert any("Completeness" in c.value for c in at.caption)
