"""The bottleneck adapter, and the batched way to run many of them at once.

A bottleneck adapter is ``x + up(act(down(x)))`` (Houlsby et al., 2019; Pfeiffer et al., 2021). Its
up-projection starts at zero, so an untrained adapter is exactly the identity and a freshly adapted model
computes exactly what the base model computes.

Fusion runs several adapters on the same hidden states. Calling them one after the other would cost a Python
loop per layer; instead :func:`stack_adapters` lays their weights side by side (smaller bottlenecks padded with
zeros, which is exact: padded units see a zero weight, and their output is multiplied by a zero row) and
:func:`run_stacked` runs them all with one matrix product down and one batched product up.

Fusion does not even need the deltas themselves, only linear functions of them (a dot product with a key per
adapter, a weighted sum over adapters), so the fused forward pass keeps them factored as their bottleneck
activations (:class:`FactoredDeltas`, ``[M, N*R]`` per token instead of ``[M, N, H]``) and folds the
up-projection into those two operations; see there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from fusionlab.config import NON_LINEARITIES

_FUNCTIONS = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "tanh": torch.tanh}
ACTIVATIONS = {name: _FUNCTIONS[name] for name in NON_LINEARITIES}
"""The non-linearities :data:`fusionlab.config.NON_LINEARITIES` names (a name without a function fails here)."""


class BottleneckAdapter(nn.Module):
    """Down-projection, non-linearity, up-projection and a residual connection.

    ``forward(x)`` returns the adapter *output* ``x + delta(x)``; :meth:`delta` returns only the learned
    change, which is what fusion needs (the residual is shared by all adapters and added once).
    """

    def __init__(
        self,
        hidden_size: int,
        adapter_size: int = 64,
        non_linearity: str = "relu",
        dropout: float = 0.0,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if non_linearity not in ACTIVATIONS:
            raise ValueError(f"non_linearity must be one of {', '.join(ACTIVATIONS)}; got {non_linearity!r}")
        self.hidden_size = hidden_size
        self.adapter_size = adapter_size
        self.non_linearity = non_linearity
        self.down = nn.Linear(hidden_size, adapter_size)
        self.up = nn.Linear(adapter_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters(init_std)

    def reset_parameters(self, init_std: float = 0.02) -> None:
        """Small random down-projection, zero up-projection: the adapter starts as the identity."""
        nn.init.normal_(self.down.weight, std=init_std)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(ACTIVATIONS[self.non_linearity](self.down(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta(x)

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, adapter_size={self.adapter_size}, act={self.non_linearity}"


class StackedAdapters(NamedTuple):
    """Weights of N adapters laid side by side; see :func:`stack_adapters`."""

    down_weight: torch.Tensor  # [hidden, N * R]
    down_bias: torch.Tensor  # [N * R]
    up_weight: torch.Tensor  # [N, R, hidden]
    up_bias: torch.Tensor  # [N, hidden]
    activation: str


def stack_adapters(adapters: Sequence[BottleneckAdapter]) -> StackedAdapters:
    """Stack adapters (same hidden size and activation) into padded tensors; differentiable."""
    acts = {a.non_linearity for a in adapters}
    if len(acts) != 1:
        raise ValueError(f"adapters fused together must share one non-linearity, got {sorted(acts)}")
    rank = max(a.adapter_size for a in adapters)
    downs, down_biases, ups = [], [], []
    for a in adapters:
        pad = rank - a.adapter_size
        downs.append(F.pad(a.down.weight, (0, 0, 0, pad)))  # [R, H]
        down_biases.append(F.pad(a.down.bias, (0, pad)))
        ups.append(F.pad(a.up.weight.t(), (0, 0, 0, pad)))  # [R, H]
    return StackedAdapters(
        down_weight=torch.cat(downs, dim=0).t().contiguous(),
        down_bias=torch.cat(down_biases),
        up_weight=torch.stack(ups).contiguous(),
        up_bias=torch.stack([a.up.bias for a in adapters]),
        activation=acts.pop(),
    )


def snapshot_cache_mode() -> contextlib.AbstractContextManager:
    """The mode an inference snapshot builds what it keeps in (stacked weights, attention folds): ordinary
    tensors without gradients, even when first built inside ``torch.inference_mode()``. Inference tensors could
    not be used again with autograd on, and salience (integrated gradients) runs the same snapshot with it on."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode(False))
    stack.enter_context(torch.no_grad())
    return stack


def bottleneck(stacked: StackedAdapters, hidden: torch.Tensor) -> torch.Tensor:
    """Bottleneck activations ``act(hidden @ down + bias)`` of all stacked adapters for ``hidden`` [M, H]: [M, N*R]."""
    return ACTIVATIONS[stacked.activation](torch.addmm(stacked.down_bias, hidden, stacked.down_weight))


def run_stacked(stacked: StackedAdapters, hidden: torch.Tensor) -> torch.Tensor:
    """Deltas of all stacked adapters for ``hidden`` [M, H]: returns [M, N, H] (one product down, one up).

    Adapter dropout is not applied here: fusion runs with its adapters frozen, where the paper keeps them
    deterministic.
    """
    return factor_stacked(stacked, hidden).materialize()


def factor_stacked(stacked: StackedAdapters, hidden: torch.Tensor) -> FactoredDeltas:
    """The deltas of all stacked adapters for ``hidden`` [M, H], kept factored (see :class:`FactoredDeltas`)."""
    return FactoredDeltas(bottleneck(stacked, hidden), stacked)


class FactoredDeltas(NamedTuple):
    """The deltas ``d_i = a_i @ U_i + b_i`` of N stacked adapters, held as their activations ``a`` [M, N*R].

    Everything fusion needs from the deltas is linear in them, so the up-projection can be folded into it:

    * :meth:`dot`, ``v . d_i = (v @ U_i^T) . a_i + v . b_i``: one ``[M, H] x [H, N*R]`` product;
    * :meth:`mix`, ``sum_i w_i d_i = (w_i a_i)_i @ U + w @ B``: one ``[M, N*R] x [N*R, H]`` product.

    Both are exact re-associations. Materialising the deltas would cost the same products (N batched
    ``R x H`` products up) plus writing and twice re-reading N hidden-size vectors per token, which for a
    batch of sequences is far more memory traffic than the GEMMs themselves.
    ``shape``/``dtype``/``device`` describe the deltas as if materialised (``[M, N, H]``).
    """

    activations: torch.Tensor  # [M, N * R], after the non-linearity
    stacked: StackedAdapters

    @property
    def shape(self) -> torch.Size:
        num, _, hidden = self.stacked.up_weight.shape
        return torch.Size((self.activations.shape[0], num, hidden))

    @property
    def dtype(self) -> torch.dtype:
        return self.activations.dtype

    @property
    def device(self) -> torch.device:
        return self.activations.device

    def _up(self) -> torch.Tensor:
        return self.stacked.up_weight.view(-1, self.stacked.up_weight.shape[-1])  # [N*R, H], a view

    def materialize(self) -> torch.Tensor:
        """The deltas as a tensor [M, N, H]."""
        rows, (num, rank, _) = self.activations.shape[0], self.stacked.up_weight.shape
        per_adapter = self.activations.view(rows, num, rank).transpose(0, 1)  # [N, M, R]
        return torch.baddbmm(self.stacked.up_bias.unsqueeze(1), per_adapter, self.stacked.up_weight).transpose(0, 1)

    def up_rows(self) -> torch.Tensor:
        """``[U; B]`` [N*R + N, H]: every delta is a combination of these rows, ``d_i = a_i @ U_i + 1 * b_i``."""
        return torch.cat([self._up(), self.stacked.up_bias])

    def dot(self, vectors: torch.Tensor) -> torch.Tensor:
        """``vectors[m, k] . d_i[m]`` for ``vectors`` [M, K, H]: returns [M, K, N]."""
        rows, k, hidden = vectors.shape
        flat = vectors.reshape(rows * k, hidden)
        through_up = torch.mm(flat, self._up().t()).view(rows, k, -1)  # v @ U_i^T, for every i at once
        return self._dot(through_up, torch.mm(flat, self.stacked.up_bias.t()).view(rows, k, -1))

    def dot_projected(self, projected: torch.Tensor) -> torch.Tensor:
        """:meth:`dot` given ``projected = vectors @ up_rows().t()`` [M, K, N*R + N], e.g. from a matrix that
        folds that product into the one computing the vectors: returns [M, K, N]."""
        split = self.activations.shape[1]
        return self._dot(projected[..., :split], projected[..., split:])

    def _dot(self, through_up: torch.Tensor, through_bias: torch.Tensor) -> torch.Tensor:
        rows, k, _ = through_up.shape
        num, rank, _ = self.stacked.up_weight.shape
        products = through_up.view(rows, k, num, rank) * self.activations.view(rows, 1, num, rank)
        return products.sum(dim=-1) + through_bias

    def mix(self, weights: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """``base[m, k] + sum_i weights[m, k, i] d_i[m]`` for ``weights`` [M, K, N], ``base`` [M, K, H] or None."""
        rows, k, num = weights.shape
        rank = self.stacked.up_weight.shape[1]
        scaled = (self.activations.view(rows, 1, num, rank) * weights.unsqueeze(-1)).view(rows * k, num * rank)
        flat_weights = weights.reshape(rows * k, num)
        if base is None:
            out = torch.mm(flat_weights, self.stacked.up_bias)
        else:
            out = torch.addmm(base.reshape(rows * k, -1), flat_weights, self.stacked.up_bias)
        return torch.addmm(out, scaled, self._up()).view(rows, k, -1)
