"""One fusion-weight path: the model's weights, reduced once, agree between every consumer.

Evaluation (dev statistics and training snapshots), the Playground and Mechanics all read the model's
``[batch, tokens, heads, adapters]`` weights through :mod:`fusionlab.fusion_weights`; these tests run the real
trained tiny workspace and check that the three consumers report the same numbers for the same input, that
padding never counts, and that Mechanics' adapter inputs are the ones the model's adapters really read.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from fusionlab import fusion_weights
from fusionlab.base_model import ffn_output_modules
from fusionlab.dashboard import mechanics
from fusionlab.dashboard.widgets import load_predictor
from fusionlab.data import get_task, make_collator
from fusionlab.evaluation import evaluate_model

pytestmark = pytest.mark.slow

PREMISE = "The cat sat on the mat while the dog slept by the fire."
HYPOTHESIS = "An animal is sleeping."


@pytest.fixture(scope="module")
def predictor(tiny_workspace):
    return load_predictor(tiny_workspace, "rte-attention")


def test_padding_never_counts_in_a_token_mean(predictor):
    """A short example padded in a batch has the same per-layer means as alone."""
    tok, model, names = predictor.tokenizer, predictor.model, list(predictor.info.adapters)
    pair = tok(["Short one.", PREMISE], ["Yes.", HYPOTHESIS], padding=True, return_tensors="pt")
    alone = tok(["Short one."], ["Yes."], return_tensors="pt")
    with torch.inference_mode():
        batched = model(**pair, adapter_names=names, output_fusion_weights=True)
        single = model(**alone, adapter_names=names, output_fusion_weights=True)
    means = fusion_weights.token_means(batched.fusion_weights, pair["attention_mask"])
    alone_means = fusion_weights.token_means(single.fusion_weights, alone["attention_mask"])
    torch.testing.assert_close(means[0], alone_means[0], atol=1e-5, rtol=1e-4)
    assert int(pair["attention_mask"][0].sum()) < pair["attention_mask"].shape[1]  # it really was padded
    torch.testing.assert_close(means.sum(-1), torch.ones_like(means.sum(-1)), atol=1e-5, rtol=0)


def test_playground_and_evaluation_report_the_same_weights(predictor):
    """The Playground's per-layer weights of one input equal the dev statistics of a one-example dev set."""
    comparison = predictor.compare(PREMISE, HYPOTHESIS)
    task = get_task("rte")
    encoded = predictor.tokenizer(PREMISE, HYPOTHESIS, truncation=True, max_length=predictor.info.max_length)
    dev = Dataset.from_dict({k: [v] for k, v in encoded.items()} | {"labels": [0]})
    stats = evaluate_model(
        predictor.model, dev, task, make_collator(predictor.tokenizer), list(predictor.info.adapters)
    ).fusion_stats
    assert stats is not None
    torch.testing.assert_close(
        torch.tensor(stats.mean, dtype=torch.float32), torch.from_numpy(comparison.layer_weights), atol=1e-5, rtol=0
    )


def test_mechanics_reads_the_inputs_the_adapters_read(predictor):
    """``output_adapter_inputs`` is the feed-forward output each layer's adapters get (what a hook sees there),
    and Mechanics' trained layer at temperature 1 reproduces the model's own weights for that layer."""
    model, names = predictor.model, list(predictor.info.adapters)
    encoded = predictor.encode(PREMISE, HYPOTHESIS)
    seen: list[torch.Tensor] = []
    handle = ffn_output_modules(model.base_model)[2].register_forward_hook(
        lambda module, inputs, output: seen.append(output.detach()), prepend=True
    )
    try:
        with torch.inference_mode():
            out = model(**encoded.inputs, adapter_names=names, output_adapter_inputs=True, output_fusion_weights=True)
    finally:
        handle.remove()
    assert out.adapter_inputs is not None and len(out.adapter_inputs) == predictor.info.num_layers
    torch.testing.assert_close(out.adapter_inputs[2], seen[0])

    outputs = mechanics.real_outputs(predictor, PREMISE, HYPOTHESIS, layer=2)
    result = mechanics.fuse(outputs, predictor.info.method, temperature=1.0)
    model_layer = fusion_weights.example_tokens(out.fusion_weights, 0, encoded.kept_tokens)[2]
    torch.testing.assert_close(torch.from_numpy(result.per_token), model_layer, atol=1e-5, rtol=0)


def test_reducer_refuses_a_missing_weight_list():
    with pytest.raises(ValueError, match="output_fusion_weights"):
        fusion_weights.per_token([])
