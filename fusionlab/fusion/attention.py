"""Attention fusion (Pfeiffer et al., 2021): each token chooses, per head, how much of each adapter to use.

Query from the layer's own hidden state, keys and values from the adapter outputs, softmax over adapters.
Computed with the exact re-association

    q . (W_k a_i + b_k) = (W_k^T q) . a_i + q . b_k        sum_i s_i (W_v a_i + b_v) = W_v (sum_i s_i a_i) + b_v

so no adapter output is ever projected: the cost is three hidden x hidden products per token (query, W_k^T q,
value) whatever the number of adapters, plus N dot products and one weighted sum. ``q . b_k`` is the same for
every adapter and cancels in the softmax, so the key has no bias at all.

With one head and frozen query/key (inference, or training anything but the fusion), the query and key fold
into one product as well, ``W_k^T q = (W_k^T W_q) h + W_k^T b_q``, with that matrix and vector computed once
and cached: two hidden x hidden products per token instead of three. Given factored deltas (what the model
passes, see :class:`~fusionlab.adapters.layer.FactoredDeltas`) the adapters' up-projection is folded into the
scores and the weighted sum, so no ``[tokens, N, hidden]`` tensor is ever built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fusionlab.adapters.layer import FactoredDeltas
from fusionlab.fusion.base import FusionLayer, weighted_sum


class AttentionFusion(FusionLayer):
    """Multi-head dot-product attention over adapters; value starts as the identity."""

    method = "attention"
    accepts_factored_deltas = True  # fuse_deltas takes FactoredDeltas as well as [M, N, H] tensors

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
        self._folded_query_key: tuple | None = None  # see _keys_query; never saved
        self.reset_parameters()

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

    def fuse_deltas(
        self,
        query: torch.Tensor,
        deltas: torch.Tensor | FactoredDeltas,
        residual: torch.Tensor | None,
        adapter_indices: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        heads, dim = self.num_attention_heads, self.head_dim
        keys_query = self._keys_query(query)  # [M, h, H]: each head's query taken back through its key
        if isinstance(deltas, FactoredDeltas):
            scores = deltas.dot(keys_query)  # [M, h, N]
        else:
            scores = torch.bmm(keys_query, deltas.transpose(1, 2))  # [M, h, N]
        weights = torch.softmax(scores / (math.sqrt(dim) * self.temperature), dim=-1)
        mixed = weighted_sum(self.dropout(weights), deltas, residual)  # [M, h, H]
        if heads == 1:
            fused = nn.functional.linear(mixed.squeeze(1), self.value.weight, self.value.bias)
        else:
            value_w = self.value.weight.view(heads, dim, self.hidden_size)
            per_head = torch.bmm(mixed.transpose(0, 1), value_w.transpose(1, 2))  # [h, M, d]
            fused = per_head.transpose(0, 1).reshape(-1, self.hidden_size) + self.value.bias
        return fused, weights

    def _keys_query(self, query: torch.Tensor) -> torch.Tensor:
        """``W_k,j^T q_j`` for every head j, with ``q = W_q h + b_q``: returns [M, heads, H]."""
        heads, dim = self.num_attention_heads, self.head_dim
        if heads == 1:
            folded = self._folded()
            if folded is not None:
                return torch.addmm(folded[1], query, folded[0]).unsqueeze(1)
        q = self.query(query)  # [M, H]
        if heads == 1:
            return (q @ self.key.weight).unsqueeze(1)  # [M, 1, H]
        key_w = self.key.weight.view(heads, dim, self.hidden_size)
        return torch.bmm(q.view(-1, heads, dim).transpose(0, 1), key_w).transpose(0, 1)  # [M, h, H]

    def _folded(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(W_q^T W_k, b_q W_k)``, cached while query and key are unchanged; None while they are learning.

        Valid while the three parameters are the same tensors, in the same storage, at the same in-place
        version (an optimiser step or ``load_state_dict`` bumps it), as for the adapter stacks.
        """
        params = (self.query.weight, self.query.bias, self.key.weight)
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return None
        state = [(id(p), p.data_ptr(), p._version) for p in params]  # ids are safe: the cache keeps params alive
        cached = self._folded_query_key
        if cached is None or cached[1] != state:
            weight, bias, key = params
            # never inference tensors: a product cached under inference_mode may serve a training step later
            with torch.no_grad(), torch.inference_mode(False):
                folded = (weight.t() @ key, bias @ key)
            cached = self._folded_query_key = (params, state, folded)
        return cached[2]

    def regularization_loss(self) -> torch.Tensor:
        """The paper's value regulariser ``||I - W_v||^2``: keeps the value close to the identity."""
        eye = torch.eye(self.hidden_size, device=self.value.weight.device, dtype=self.value.weight.dtype)
        return (eye - self.value.weight).pow(2).sum()

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_adapters={self.num_adapters}, "
            f"num_attention_heads={self.num_attention_heads}, temperature={self.temperature}"
        )
