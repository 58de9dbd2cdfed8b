"""Attention fusion (Pfeiffer et al., 2021): each token chooses, per head, how much of each adapter to use.

Query from the layer's own hidden state, keys and values from the adapter outputs, softmax over adapters.
Computed with the exact re-association

    q . (W_k a_i + b_k) = (W_k^T q) . a_i + q . b_k        sum_i s_i (W_v a_i + b_v) = W_v (sum_i s_i a_i) + b_v

so no adapter output is ever projected: the cost is three hidden x hidden products per token (query, W_k^T q,
value) whatever the number of adapters, plus N dot products and one weighted sum. ``q . b_k`` is the same for
every adapter and cancels in the softmax, so the key has no bias at all.

With one head, nothing learning and enough tokens in the call, the products of the fused weights are folded
too: ``W_k^T q = (W_q^T W_k)^T h + W_k^T b_q`` and, given factored deltas (what the model passes, see
:class:`~fusionlab.adapters.layer.FactoredDeltas`), the adapters' up-projection as well, so that all N scores
of a token cost one ``H x (N*R + N)`` product. The folded matrix is computed afresh in every call that uses
it, never cached (see ``_may_fold``), so it can never describe weights other than the current ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fusionlab.adapters.layer import FactoredDeltas, snapshot_cache_mode
from fusionlab.config import FusionConfig
from fusionlab.fusion.base import FusionLayer, weighted_sum

MAX_SNAPSHOT_FOLDS = 64
"""A snapshot keeps one fold per adapter subset it has answered with (the Playground's switches); more than this
means stacks built outside the snapshot, so the kept folds are dropped rather than grown without bound."""


class AttentionFusion(FusionLayer):
    """Multi-head dot-product attention over adapters; value starts as the identity."""

    method = "attention"
    has_heads = True
    has_value_projection = True

    def __init__(
        self,
        hidden_size: int,
        num_adapters: int,
        num_attention_heads: int = 1,
        dropout: float = 0.0,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(hidden_size, num_adapters, dropout, temperature)
        if num_attention_heads <= 0 or hidden_size % num_attention_heads:
            raise ValueError(
                f"num_attention_heads ({num_attention_heads}) must be positive and divide hidden_size ({hidden_size})"
            )
        self.num_attention_heads = num_attention_heads
        self.head_dim = hidden_size // num_attention_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        # no key bias: q . b_k is the same for every adapter and cancels in the softmax, so it could never learn
        self.key = nn.Linear(hidden_size, hidden_size, bias=False)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.folds: dict[int, tuple[object, torch.Tensor, torch.Tensor]] | None = None
        """Folded products per stacked-adapter set, kept only in an inference snapshot (see
        :mod:`fusionlab.inference_snapshot`), where they are computed once; ``None``: never kept."""
        self.reset_parameters()

    @classmethod
    def config_options(cls, config: FusionConfig) -> dict[str, Any]:
        return {"num_attention_heads": config.num_attention_heads}

    def reset_parameters(self) -> None:
        """Small random query/key (near-uniform weights at first), identity value: fusion starts as averaging."""
        nn.init.normal_(self.query.weight, std=0.02)
        nn.init.zeros_(self.query.bias)
        nn.init.normal_(self.key.weight, std=0.02)
        with torch.no_grad():
            self.value.weight.copy_(torch.eye(self.hidden_size))
            self.value.bias.zero_()

    @property
    def num_heads(self) -> int:
        return self.num_attention_heads

    @property
    def accepts_factored_deltas(self) -> bool:
        """Whether the model should hand :meth:`fuse_deltas` factored deltas: with one head they are cheaper
        than ``[M, N, H]``; with h heads every score and sum would go through the ``N*R``-wide activations h
        times, which costs more than building the deltas once."""
        return self.num_attention_heads == 1

    def fuse_deltas(
        self,
        query: torch.Tensor,
        deltas: torch.Tensor | FactoredDeltas,
        residual: torch.Tensor | None,
        adapter_indices: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        heads, dim = self.num_attention_heads, self.head_dim
        if heads > 1 and isinstance(deltas, FactoredDeltas):
            deltas = deltas.materialize()  # see accepts_factored_deltas
        scores = self._scores(query, deltas)  # [M, h, N]
        weights = torch.softmax(scores / (math.sqrt(dim) * self.temperature), dim=-1)
        return self.combine(weights, deltas, residual), weights

    def combine(
        self, weights: torch.Tensor, deltas: torch.Tensor | FactoredDeltas, residual: torch.Tensor | None
    ) -> torch.Tensor:
        """Each head's weighted sum through its slice of the value projection (one head: the whole of it)."""
        heads, dim = self.num_attention_heads, self.head_dim
        if heads > 1 and isinstance(deltas, FactoredDeltas):
            deltas = deltas.materialize()
        mixed = weighted_sum(self.dropout(weights), deltas, residual)  # [M, h, H]
        if heads == 1:
            return nn.functional.linear(mixed.squeeze(1), self.value.weight, self.value.bias)
        value_w = self.value.weight.view(heads, dim, self.hidden_size)
        per_head = torch.bmm(mixed.transpose(0, 1), value_w.transpose(1, 2))  # [h, M, d]
        return per_head.transpose(0, 1).reshape(-1, self.hidden_size) + self.value.bias

    def _scores(self, query: torch.Tensor, deltas: torch.Tensor | FactoredDeltas) -> torch.Tensor:
        """``(W_k,j^T q_j) . d_i`` for every head j and adapter i: returns [M, heads, N]."""
        if not isinstance(deltas, FactoredDeltas):
            return torch.bmm(self._keys_query(query), deltas.transpose(1, 2))
        if self.folds is not None and self.num_attention_heads == 1:
            matrix, bias = self._snapshot_fold(deltas)
            return deltas.dot_projected(torch.addmm(bias, query, matrix).unsqueeze(1))
        if self._may_fold(query.shape[0], deltas):
            matrix, bias = self._fold(deltas)
            return deltas.dot_projected(torch.addmm(bias, query, matrix).unsqueeze(1))
        return deltas.dot(self._keys_query(query))

    def _fold(self, deltas: FactoredDeltas) -> tuple[torch.Tensor, torch.Tensor]:
        """``W_q^T W_k [U; B]^T`` in one [H, N*R + N] matrix and its bias: every score of a token then costs one
        product with it."""
        rows = deltas.up_rows().t()
        return (self.query.weight.t() @ self.key.weight) @ rows, (self.query.bias @ self.key.weight) @ rows

    def _snapshot_fold(self, deltas: FactoredDeltas) -> tuple[torch.Tensor, torch.Tensor]:
        """The fold of a snapshot, computed once per stacked-adapter set (the snapshot keeps each set's stack, so
        its identity names the set; the stack is held here too, so the identity is never reused)."""
        assert self.folds is not None
        entry = self.folds.get(id(deltas.stacked))
        if entry is None or entry[0] is not deltas.stacked:
            if len(self.folds) >= MAX_SNAPSHOT_FOLDS:  # stacks from outside the snapshot's own: never grow unbounded
                self.folds.clear()
            with snapshot_cache_mode():
                entry = (deltas.stacked, *self._fold(deltas))
            self.folds[id(deltas.stacked)] = entry
        return entry[1], entry[2]

    def _keys_query(self, query: torch.Tensor) -> torch.Tensor:
        """``W_k,j^T q_j`` for every head j, with ``q = W_q h + b_q``: returns [M, heads, H]."""
        heads, dim = self.num_attention_heads, self.head_dim
        q = self.query(query)  # [M, H]
        if heads == 1:
            return (q @ self.key.weight).unsqueeze(1)  # [M, 1, H]
        key_w = self.key.weight.view(heads, dim, self.hidden_size)
        return torch.bmm(q.view(-1, heads, dim).transpose(0, 1), key_w).transpose(0, 1)  # [M, h, H]

    def _may_fold(self, rows: int, deltas: FactoredDeltas) -> bool:
        """Whether to fold query, key and the adapters' up-projections into one matrix for this call.

        The folded matrix is recomputed on every call (``H^3 + H^2 (N*R + N)`` multiply-adds), never cached:
        a cache keyed on version counters went stale under the fused AdamW and ``.data`` edits, and a correct
        check (compare every weight) reads as much memory as the products cost on short inputs. Folding saves
        ``2 H^2`` per token and costs ``H^2 (H + N*R + N)`` once, so it pays from ``(H + N*R + N) / 2`` tokens
        on (a batch of sequences, not one short sentence). Never while the fused weights learn: the unfolded
        path is the differentiable one, and its products are the ones whose gradients Trainer computes.
        """
        learning = torch.is_grad_enabled() and any(
            p.requires_grad for p in (self.query.weight, self.query.bias, self.key.weight, deltas.stacked.up_weight)
        )
        width = deltas.activations.shape[1] + deltas.stacked.up_weight.shape[0]
        return self.num_attention_heads == 1 and not learning and 2 * rows > self.hidden_size + width

    def regularization_loss(self) -> torch.Tensor:
        """The paper's value regulariser ``||I - W_v||^2``: keeps the value close to the identity."""
        eye = torch.eye(self.hidden_size, device=self.value.weight.device, dtype=self.value.weight.dtype)
        return (eye - self.value.weight).pow(2).sum()

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_adapters={self.num_adapters}, "
            f"num_attention_heads={self.num_attention_heads}, temperature={self.temperature}"
        )
