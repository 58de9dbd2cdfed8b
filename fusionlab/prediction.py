"""One prediction on one input, as the command line and the Playground both make it.

``fusionlab predict`` and the dashboard's :class:`~fusionlab.dashboard.inference.Predictor` go through
:func:`predict`, so "the probabilities of adapter X on this text" is computed one way: tokenised at the
checkpoint's own ``max_length``, softmax in float32, the head the adapter names select (one adapter: its own
head; several: the fusion's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fusionlab.data import encode_texts
from fusionlab.model import FusionModel, FusionModelOutput


@dataclass(frozen=True)
class Prediction:
    """Class probabilities of one forward pass, with the label names they belong to."""

    labels: tuple[str, ...]
    probabilities: np.ndarray  # [classes]
    adapters: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.labels[int(self.probabilities.argmax())]

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())


@dataclass(frozen=True)
class EncodedInput:
    """One input ready for the model, with what truncation kept of it."""

    inputs: dict[str, torch.Tensor]
    original_tokens: int  # before truncation, special tokens included
    kept_tokens: int
    tokens: tuple[str, ...]  # the kept positions as the tokenizer spells them

    @property
    def truncated(self) -> bool:
        return self.original_tokens > self.kept_tokens


def encode_input(tokenizer, text: str, text_pair: str | None, max_length: int) -> EncodedInput:
    """Tokenise one text (or pair) for a model trained at ``max_length`` tokens."""
    encoded = encode_texts(tokenizer, text, text_pair, max_length)
    inputs = dict(encoded.inputs)
    kept = int(inputs["attention_mask"][0].sum())
    tokens = tuple(tokenizer.convert_ids_to_tokens(inputs["input_ids"][0, :kept].tolist()))
    return EncodedInput(inputs, encoded.lengths[0], kept, tokens)


def predict(
    model: FusionModel,
    encoded: EncodedInput,
    adapter_names: Sequence[str] | None,
    force_fusion: bool = False,
    output_fusion_weights: bool = False,
) -> tuple[Prediction, FusionModelOutput]:
    """The model's prediction with ``adapter_names`` (see :meth:`FusionModel.forward` for the path taken)."""
    with torch.inference_mode():
        out = model(
            **encoded.inputs,
            adapter_names=adapter_names,
            force_fusion=force_fusion,
            output_fusion_weights=output_fusion_weights,
        )
    names = list(out.adapter_names or [])
    labels = tuple(model.label_names(names, force_fusion=force_fusion))
    probabilities = torch.softmax(out.logits.float(), dim=-1)[0].numpy()
    return Prediction(labels, probabilities, tuple(names)), out
