"""Average fusion: fixed equal weights, the baseline that learned fusion has to beat."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fusionlab.adapters.layer import FactoredDeltas
from fusionlab.fusion.base import FusionLayer


class AverageFusion(FusionLayer):
    """``mean_i a_i``: no parameters; with adapters removed, the mean over those kept."""

    method = "average"
    learns_weights = False
    uses_temperature = False
    token_independent_weights = True
    accepts_factored_deltas = True  # fuse_deltas takes FactoredDeltas as well as [M, N, H] tensors

    def fuse_deltas(
        self,
        query: torch.Tensor,
        deltas: torch.Tensor | FactoredDeltas,
        residual: torch.Tensor | None,
        adapter_indices: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, num = deltas.shape[:2]
        weights = torch.full((rows, 1, num), 1.0 / num, dtype=deltas.dtype, device=deltas.device)
        return self.combine(weights, deltas, residual), weights
