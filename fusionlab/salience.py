"""Which words decide: integrated gradients for the target's own adapter and for its fusion, on the same tokens.

Integrated gradients (Sundararajan et al., 2017) attributes the change of one logit between a *baseline* input
and the real one to the input's tokens: the gradient of the logit, averaged along the straight path between the
two inputs' word embeddings, times the embedding difference, summed over the embedding dimensions. Its
*completeness* property is the honesty check shown with every map: the attributions add up to
``logit(input) − logit(baseline)``, up to the error of the path integral's quadrature (Captum's Gauss–Legendre
rule), which is reported with the result and drives the number of steps.

Choices, fixed here so that every view and test uses the same ones:

- **Baseline**: the same token positions with every word replaced by ``[PAD]``; ``[CLS]``, ``[SEP]`` and the
  attention mask are kept, so the baseline is "a sentence of the same shape with no words in it".
- **Class**: both models are attributed on the *same* class (by default the fusion's answer), so a token's two
  numbers answer the same question — how much it pushes towards that class — and can be set side by side on one
  colour scale. A positive value pushes towards the class, a negative one away from it.
- **Steps**: :data:`FIRST_STEPS` steps, doubled while the completeness error exceeds :data:`TOLERANCE` of the
  logit change, up to :data:`MAX_STEPS`; all steps of one model run as one batch (Captum's
  ``internal_batch_size``), which is what keeps a 40-token sentence near a second on two CPU threads
  (``bench/salience.py``).

The attribution itself is Captum's (:class:`captum.attr.LayerIntegratedGradients` on the encoder's word
embedding layer): the field's maintained implementation rather than hand-written code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fusionlab.fusion.override import WeightOverride
from fusionlab.model import FusionModel
from fusionlab.prediction import EncodedInput

FIRST_STEPS = 16
MAX_STEPS = 64
TOLERANCE = 0.05
"""Completeness is accepted when ``|sum of attributions − logit change| ≤ TOLERANCE · max(|logit change|, 1)``:
relative for a large change, absolute (0.05 logits) for a change near zero."""


@dataclass(frozen=True)
class TokenAttribution:
    """One model's integrated-gradients attribution of one class logit to each token of one input."""

    values: np.ndarray  # [tokens], summed over the embedding dimensions
    logit_change: float  # logit(input) − logit(baseline)
    steps: int

    @property
    def error(self) -> float:
        """Completeness error: how far the attributions' sum is from the logit change they explain."""
        return float(self.values.sum()) - self.logit_change

    @property
    def converged(self) -> bool:
        return abs(self.error) <= TOLERANCE * max(abs(self.logit_change), 1.0)


@dataclass(frozen=True)
class TokenDifference:
    """One token where the two models' attributions differ, with both values."""

    position: int
    token: str
    single: float
    fused: float

    def describe(self) -> str:
        return f"“{self.token}” ({self.single:+.2f} alone, {self.fused:+.2f} fused)"


@dataclass(frozen=True)
class Salience:
    """The target adapter's and the fusion's attributions of the same class logit, token by token."""

    tokens: tuple[str, ...]
    label: str  # the class both attributions explain
    single: TokenAttribution
    fused: TokenAttribution
    single_name: str
    fused_name: str

    @property
    def scale(self) -> float:
        """The one colour scale's half-range: the largest absolute attribution of either model (0 maps to the
        middle colour, so a sign is never hidden by an offset)."""
        return float(max(np.abs(self.single.values).max(), np.abs(self.fused.values).max(), 1e-6))

    def differences(self, count: int = 3) -> list[TokenDifference]:
        """The ``count`` word tokens whose attributions differ most between the two models, largest first
        (special tokens excluded: their embeddings are the same in the baseline, so they carry almost none)."""
        gaps = np.abs(self.fused.values - self.single.values)
        order = [i for i in np.argsort(-gaps, kind="stable") if not _is_special(self.tokens[i])]
        return [
            TokenDifference(int(i), self.tokens[i], float(self.single.values[i]), float(self.fused.values[i]))
            for i in order[:count]
        ]

    def describe_differences(self, count: int = 3) -> str:
        """The line under the map: the tokens on which the two models disagree most about the class."""
        named = "; ".join(d.describe() for d in self.differences(count))
        return f"Tokens whose push towards “{self.label}” differs most between {self.single_name} alone and the fusion: {named}."

    def method_note(self) -> str:
        """How the map was made and how far each row's completeness holds: the reader's check on the method."""
        rows = "; ".join(
            f"{name}: they sum to {a.values.sum():+.2f} for a logit change of {a.logit_change:+.2f} "
            f"({a.steps} steps, error {a.error:+.3f}{'' if a.converged else ', above the tolerance'})"
            for name, a in ((f"{self.single_name} alone", self.single), ("fusion", self.fused))
        )
        return (
            f"Integrated gradients of the “{self.label}” logit over the word embeddings, from a baseline with every "
            f"word replaced by [PAD] ([CLS], [SEP] kept). Completeness, {rows}."
        )


def _is_special(token: str) -> bool:
    return token.startswith("[") and token.endswith("]")


def word_free_baseline(input_ids: torch.Tensor, special_ids: Sequence[int], pad_id: int) -> torch.Tensor:
    """The baseline input: every position that is not a special token becomes ``pad_id`` (see the module)."""
    special = torch.isin(input_ids, torch.tensor(list(special_ids), dtype=input_ids.dtype))
    return torch.where(special, input_ids, torch.full_like(input_ids, pad_id))


def integrated_gradients(
    model: FusionModel,
    encoded: EncodedInput,
    baseline_ids: torch.Tensor,
    target: int,
    adapter_names: Sequence[str],
    force_fusion: bool = False,
    override: WeightOverride | None = None,
    steps: int | None = None,
) -> TokenAttribution:
    """Integrated gradients of logit ``target`` for one input through ``adapter_names`` (see the module for the
    baseline and the step rule; ``steps`` fixes the step count instead, for the bench). The model is not
    changed: its parameters need no gradient, only the path's embeddings get one."""
    from captum.attr import LayerIntegratedGradients  # imported here: only this view needs captum

    names = list(adapter_names)

    def logits(input_ids, attention_mask, token_type_ids=None):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            adapter_names=names,
            force_fusion=force_fusion,
            fusion_weight_override=override,
        )
        return out.logits.float()

    inputs = encoded.inputs
    kept = encoded.kept_tokens
    ids = inputs["input_ids"][:, :kept]
    extra = tuple(
        inputs[k][:, :kept] if inputs.get(k) is not None else None for k in ("attention_mask", "token_type_ids")
    )
    baseline = baseline_ids[:, :kept]
    with torch.no_grad():  # the input and the baseline in one batch: one forward pass, not two
        both = logits(torch.cat([ids, baseline]), *(None if t is None else t.expand(2, -1) for t in extra))
        change = float(both[0, target] - both[1, target])
    explainer = LayerIntegratedGradients(logits, model.base_model.embeddings.word_embeddings)
    fixed = steps is not None
    steps = steps or FIRST_STEPS
    while True:
        with torch.enable_grad():
            attributions = explainer.attribute(
                ids,
                baselines=baseline,
                additional_forward_args=extra,
                target=target,
                n_steps=steps,
                internal_batch_size=steps,
            )
        result = TokenAttribution(attributions.sum(-1)[0].detach().float().numpy(), change, steps)
        if fixed or result.converged or steps >= MAX_STEPS:
            return result
        steps *= 2


def salience(
    model: FusionModel,
    tokenizer,
    encoded: EncodedInput,
    target_adapter: str,
    fused_adapters: Sequence[str],
    target: int,
    label: str,
    override: WeightOverride | None = None,
) -> Salience:
    """Attributions of class ``target`` (named ``label``) for ``target_adapter`` alone (its own head) and for
    the fusion over ``fused_adapters`` (the fusion's head, with ``override`` if weights are set by hand)."""
    baseline = word_free_baseline(encoded.inputs["input_ids"], tokenizer.all_special_ids, tokenizer.pad_token_id)
    single = integrated_gradients(model, encoded, baseline, target, [target_adapter])
    fused = integrated_gradients(model, encoded, baseline, target, fused_adapters, force_fusion=True, override=override)
    return Salience(encoded.tokens, label, single, fused, target_adapter, "the fusion")
