"""One prediction on one input, as the command line and the Playground both make it.

``fusionlab predict`` and the dashboard's :class:`~fusionlab.dashboard.inference.Predictor` go through
:func:`predict`, so "the probabilities of adapter X on this text" is computed one way: tokenised at the
checkpoint's own ``max_length``, softmax in float32, the head the adapter names select (one adapter: its own
head; several: the fusion's).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fusionlab.data import encode_texts
from fusionlab.fusion.override import WeightOverride
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


UNKNOWN_SHARE = 0.3
"""Above this share of unknown tokens the answer is mostly about the ones the model could read: say so."""
FOREIGN_SHARE = 0.5
"""Above this share of letters outside the Latin script the input is mostly in a language the encoder did not
learn (the bundled all-MiniLM-L6-v2 and the task data are English)."""


def unfamiliar_input(texts: Sequence[str | None], tokens: Sequence[str], unk_token: str | None) -> str | None:
    """Why the model's answer on this input means little, or ``None``: most of it unknown to the tokenizer
    (emoji, symbols: they become ``unk_token``), or mostly in another script than the English it learned. A
    confident answer on "😀😀😀" or on Chinese text is the head's guess, not understanding."""
    words = [t for t in tokens if not (t.startswith("[") and t.endswith("]")) or t == unk_token]
    unknown = sum(t == unk_token for t in words)
    if words and unknown / len(words) > UNKNOWN_SHARE:
        return (
            f"{unknown} of the input's {len(words)} tokens are unknown to the model's vocabulary (emoji, symbols, "
            "unusual characters): its answer rests on the rest and says little."
        )
    letters = [c for text in texts if text for c in text if c.isalpha()]
    foreign = sum(not unicodedata.name(c, "").startswith("LATIN") for c in letters)
    if letters and foreign / len(letters) > FOREIGN_SHARE:
        return (
            "Most of the input is not in the Latin script: the encoder and the task data are English, so the "
            "answer (however confident) is not to be trusted."
        )
    return None


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
    fusion_weight_override: WeightOverride | None = None,
) -> tuple[Prediction, FusionModelOutput]:
    """The model's prediction with ``adapter_names`` (see :meth:`FusionModel.forward` for the path taken and
    for weights set by hand)."""
    with torch.inference_mode():
        out = model(
            **encoded.inputs,
            adapter_names=adapter_names,
            force_fusion=force_fusion,
            output_fusion_weights=output_fusion_weights,
            fusion_weight_override=fusion_weight_override,
        )
    names = list(out.adapter_names or [])
    labels = tuple(model.label_names(names, force_fusion=force_fusion))
    probabilities = torch.softmax(out.logits.float(), dim=-1)[0].numpy()
    return Prediction(labels, probabilities, tuple(names)), out
