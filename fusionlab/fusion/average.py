"""Average fusion: fixed equal weights, the baseline that learned fusion has to beat."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fusionlab.fusion.base import FusionLayer, weighted_sum


class AverageFusion(FusionLayer):
    """``mean_i a_i``: no parameters; with adapters removed, the mean over those kept."""

    method = "average"

    def fuse_deltas(
        self,
        query: torch.Tensor,
        deltas: torch.Tensor,
        residual: torch.Tensor | None,
        adapter_indices: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        num = deltas.shape[1]
        weights = deltas.new_full((deltas.shape[0], 1, num), 1.0 / num)
        return weighted_sum(self.dropout(weights), deltas, residual).squeeze(1), weights
