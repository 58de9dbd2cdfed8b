"""One reduction of fusion weights, for every consumer.

The model returns the softmax weights of every layer as ``[batch, tokens, heads, adapters]``, zero at padding
positions (:class:`fusionlab.model.FusionModelOutput`). Everything that shows or aggregates them — the dev-set
statistics and the training snapshots (:mod:`fusionlab.evaluation`), the Playground
(:mod:`fusionlab.dashboard.inference`) and Mechanics (:mod:`fusionlab.dashboard.mechanics`) — reduces them
through these functions, so "mean over heads" and "over the real tokens" mean the same thing on every page and
in every number: heads are averaged with equal weight, and padding never enters a sum or a count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def per_token(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[batch, layers, tokens, adapters]``: each layer's ``[batch, tokens, heads, adapters]`` weights with
    the heads averaged (float32; padding positions stay zero)."""
    if not weights:
        raise ValueError("no fusion weights: run the fusion path with output_fusion_weights=True")
    return torch.stack([w.float().mean(dim=-2) for w in weights], dim=1)


def token_sums(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[batch, layers, adapters]``: per-token weights summed over the tokens (padding contributes zero).

    Sums, not means, so that batches can be accumulated and divided once by the number of real tokens.
    """
    return per_token(weights).sum(dim=2)


def token_means(weights: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, layers, adapters]``: mean weight over each example's real tokens (``attention_mask`` = 1)."""
    real = attention_mask.sum(dim=1).clamp(min=1).to(torch.float32)
    return token_sums(weights) / real[:, None, None]


def example_tokens(weights: Sequence[torch.Tensor], index: int, real_tokens: int) -> torch.Tensor:
    """``[layers, tokens, adapters]`` of one example of a batch, its first ``real_tokens`` positions only."""
    return per_token(weights)[index, :, :real_tokens]
