"""Weighted fusion: one learnable logit per adapter (per layer), softmax weights shared by every token.

Cheaper and easier to read than attention fusion: the learned weights are a direct answer to "how much does
this layer use each adapter", which the dashboard plots per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from fusionlab.adapters.layer import FactoredDeltas
from fusionlab.config import WEIGHT_INITIALIZATIONS, FusionConfig
from fusionlab.fusion.base import FusionLayer


class WeightedFusion(FusionLayer):
    """``sum_i softmax(w / T)_i a_i`` with logits ``fusion_weights`` (a parameter, or a fixed buffer).

    ``weight_initialization``: ``"uniform"`` (all logits zero, equal weights), ``"normal"`` (small random
    logits), or ``"target"`` (the first adapter, by convention the target task's own, starts with half the
    total weight).
    """

    method = "weighted"
    token_independent_weights = True
    accepts_factored_deltas = True  # fuse_deltas takes FactoredDeltas as well as [M, N, H] tensors
    illustration_note = "small random logits: uniform ones would hide what the temperature does"
    learning_rate_scales: ClassVar[dict[str, float]] = {"fusion_weights": 100.0}
    """Its logits, one per adapter and layer, move at most about one learning rate a step under Adam: at a fusion's
    1e-3 on CB every weight was still within 0.004 of uniform at the kept step (26 of 156), and weighted fusion
    predicted exactly what average fusion predicts. At 100 times the rate the weights leave uniform within those
    steps (CB's own adapter rose to about half of each layer). A judgement, not a selection: ``bench/weighted_lr.py``
    found CB's selection split unable to tell 1, 10, 30 and 100 apart, and its tie rule (the weights that moved
    furthest) takes the largest scale tried; larger ones were not tried (docs/measuring.md)."""

    @classmethod
    def illustration(cls, hidden_size: int, num_adapters: int, num_heads: int = 1) -> WeightedFusion:
        return cls(hidden_size, num_adapters, weight_initialization="normal")

    def __init__(
        self,
        hidden_size: int,
        num_adapters: int,
        learnable_weights: bool = True,
        weight_initialization: str = "uniform",
        dropout: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(hidden_size, num_adapters, dropout, temperature)
        if weight_initialization not in WEIGHT_INITIALIZATIONS:
            raise ValueError(
                f"weight_initialization must be one of {', '.join(WEIGHT_INITIALIZATIONS)}, "
                f"got {weight_initialization!r}"
            )
        self.weight_initialization = weight_initialization
        logits = self._initial_logits(num_adapters, weight_initialization)
        if learnable_weights:
            self.fusion_weights = nn.Parameter(logits)
        else:
            self.register_buffer("fusion_weights", logits)

    @classmethod
    def config_options(cls, config: FusionConfig) -> dict[str, Any]:
        return {"learnable_weights": config.learnable_weights, "weight_initialization": config.weight_initialization}

    @staticmethod
    def _initial_logits(num: int, how: str) -> torch.Tensor:
        if how == "normal":
            return torch.randn(num) * 0.1
        logits = torch.zeros(num)
        if how == "target" and num > 1:
            logits[0] = torch.log(torch.tensor(float(num - 1)))  # weight 1/2 on adapter 0
        return logits

    def adapter_weights(self, adapter_indices: Sequence[int] | None = None) -> torch.Tensor:
        """Softmax weights over the (selected) adapters, renormalised over the selection."""
        logits = self.fusion_weights if adapter_indices is None else self.fusion_weights[list(adapter_indices)]
        return torch.softmax(logits / self.temperature, dim=0)

    def fuse_deltas(
        self,
        query: torch.Tensor,
        deltas: torch.Tensor | FactoredDeltas,
        residual: torch.Tensor | None,
        adapter_indices: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.adapter_weights(adapter_indices).expand(deltas.shape[0], 1, -1)
        return self.combine(weights, deltas, residual), weights

    def extra_repr(self) -> str:
        learnable = isinstance(self.fusion_weights, nn.Parameter)
        return (
            f"hidden_size={self.hidden_size}, num_adapters={self.num_adapters}, learnable_weights={learnable}, "
            f"weight_initialization={self.weight_initialization!r}"
        )
