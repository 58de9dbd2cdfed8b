"""The one small interface every fusion method implements.

A fusion layer combines N adapter outputs ``a_i = h + d_i`` (h: the layer's hidden state, d_i: adapter i's
learned change) into one hidden state, with softmax weights over the adapters that can be plotted.

Methods implement :meth:`FusionLayer.fuse_deltas`, which receives the shared residual ``h`` separately from
the deltas. Because the weights over adapters sum to one, ``sum_i s_i a_i = h + sum_i s_i d_i``: the residual is
added once instead of N times, and for attention scores it only adds a constant per token, which softmax
ignores. :meth:`FusionLayer.fuse` is the convenient entry point on full adapter outputs (as in the notebook).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from fusionlab.adapters.layer import FactoredDeltas
from fusionlab.config import FusionConfig


class FusionOutput(NamedTuple):
    """Fused hidden states ``[..., H]`` and the weights over adapters ``[..., heads, N]``."""

    hidden_states: torch.Tensor
    weights: torch.Tensor


AdapterOutputs = torch.Tensor | Sequence[torch.Tensor]


def stack_outputs(adapter_outputs: AdapterOutputs) -> torch.Tensor:
    """A list of N tensors ``[..., H]`` (or an already stacked ``[..., N, H]`` tensor) as ``[..., N, H]``."""
    if isinstance(adapter_outputs, torch.Tensor):
        return adapter_outputs
    outputs = list(adapter_outputs)
    if not outputs:
        raise ValueError("fusion needs at least one adapter output, got an empty list")
    shapes = {tuple(o.shape) for o in outputs}
    if len(shapes) != 1:
        raise ValueError(f"all adapter outputs must have the same shape, got {sorted(shapes)}")
    return torch.stack(outputs, dim=-2)


class FusionLayer(nn.Module):
    """Base class: validation, the list-of-outputs entry point, and the value-regularisation hook."""

    method: ClassVar[str] = "base"
    learns_weights: ClassVar[bool] = True
    """Whether the weights over adapters are learned (worth showing as what the fusion chose)."""
    has_heads: ClassVar[bool] = False
    """Whether ``FusionConfig.num_attention_heads`` means anything to it (the Train page, Mechanics)."""
    uses_temperature: ClassVar[bool] = True
    """Whether a softmax temperature changes its weights."""
    has_value_projection: ClassVar[bool] = False
    """Whether the fused state goes through a learned value projection (so ``value_regularization`` applies,
    and the fused change can be larger than any one adapter's)."""
    token_independent_weights: ClassVar[bool] = False
    """Whether its weights are the same for every token (one per layer and adapter: ``adapter_weights``)."""
    accepts_factored_deltas: ClassVar[bool] = False
    """Whether ``fuse_deltas`` takes :class:`FactoredDeltas` (bottleneck activations, not [M, N, H] tensors):
    the model then skips materialising every adapter's delta."""
    learning_rate_scales: ClassVar[dict[str, float]] = {}
    """Parameters of the layer (by attribute name) trained at a multiple of the run's learning rate. Under Adam a
    parameter moves at most about one learning rate a step, whatever its gradient, which suits a weight among
    thousands but not a handful of mixing logits whose softmax must travel far: see :class:`WeightedFusion`."""
    illustration_note: ClassVar[str] = ""
    """How :meth:`illustration` differs from a trained layer's start, for the Mechanics page's caption."""

    @classmethod
    def scaled_parameters(cls) -> dict[str, tuple[str, float]]:
        """Each parameter with a learning-rate scale other than 1: its label as a run records it
        (``<method>.<parameter>``: what the training loop reports having applied, and what a saved run is compared
        with to tell whether it trained as this method trains today) and its scale."""
        return {name: (f"{cls.method}.{name}", s) for name, s in cls.learning_rate_scales.items() if s != 1.0}

    @classmethod
    def illustration(cls, hidden_size: int, num_adapters: int, num_heads: int = 1) -> FusionLayer:
        """A freshly initialised layer for the Mechanics page, which shows what one fusion layer does to
        adapter outputs before (or without) training: this method's own starting state, with ``num_heads``
        heads where it has heads. Seed torch first for a reproducible one."""
        names = [f"adapter{i}" for i in range(num_adapters)]
        heads = num_heads if cls.has_heads else 1
        config = FusionConfig(fusion_method=cls.method, adapter_names=names, num_attention_heads=heads)
        return cls.from_config(config, hidden_size)

    @classmethod
    def from_config(cls, config: FusionConfig, hidden_size: int) -> FusionLayer:
        """One layer of this method over ``config.adapter_names``, with the options every method shares and
        those of :meth:`config_options`."""
        return cls(
            hidden_size,
            len(config.adapter_names),
            dropout=config.fusion_dropout,
            temperature=config.temperature,
            **cls.config_options(config),
        )

    @classmethod
    def config_options(cls, config: FusionConfig) -> dict[str, Any]:
        """This method's own constructor options, read from the config (none for the base)."""
        return {}

    def __init__(self, hidden_size: int, num_adapters: int, dropout: float = 0.0, temperature: float = 1.0) -> None:
        super().__init__()
        if hidden_size <= 0 or num_adapters <= 0:
            raise ValueError(f"hidden_size and num_adapters must be positive, got {hidden_size}, {num_adapters}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.hidden_size = hidden_size
        self.num_adapters = num_adapters
        self.temperature = float(temperature)
        self.dropout = nn.Dropout(dropout)

    @property
    def num_heads(self) -> int:
        return 1

    def fuse(
        self,
        adapter_outputs: AdapterOutputs,
        query: torch.Tensor | None = None,
        adapter_indices: Sequence[int] | None = None,
    ) -> FusionOutput:
        """Fuse full adapter outputs (list of ``[..., H]`` or ``[..., N, H]``).

        ``query`` defaults to the mean of the adapter outputs: with no hidden state at hand (as when the layer is
        tried on its own) that is the natural stand-in for "what the layer computed".
        """
        stacked = stack_outputs(adapter_outputs)
        lead, (num, hidden) = stacked.shape[:-2], stacked.shape[-2:]
        self._check(hidden, num, adapter_indices)
        if query is None:
            query = stacked.mean(dim=-2)
        fused, weights = self.fuse_deltas(
            query.reshape(-1, hidden), stacked.reshape(-1, num, hidden), None, adapter_indices
        )
        return FusionOutput(fused.reshape(*lead, hidden), weights.reshape(*lead, weights.shape[-2], num))

    def forward(
        self,
        adapter_outputs: AdapterOutputs,
        query: torch.Tensor | None = None,
        adapter_indices: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """The fused hidden states only (the notebook's ``fused = layer(adapter_outputs)``)."""
        return self.fuse(adapter_outputs, query, adapter_indices).hidden_states

    def _check(self, hidden: int, num: int, adapter_indices: Sequence[int] | None) -> None:
        if hidden != self.hidden_size:
            raise ValueError(f"adapter outputs have hidden size {hidden}, this fusion layer expects {self.hidden_size}")
        expected = self.num_adapters if adapter_indices is None else len(adapter_indices)
        if num != expected:
            raise ValueError(f"got {num} adapter outputs, expected {expected}")
        if adapter_indices is not None and any(not 0 <= i < self.num_adapters for i in adapter_indices):
            raise ValueError(f"adapter indices {list(adapter_indices)} out of range for {self.num_adapters} adapters")

    def fuse_deltas(
        self,
        query: torch.Tensor,
        deltas: torch.Tensor,
        residual: torch.Tensor | None,
        adapter_indices: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse ``residual + deltas[:, i]`` over i; query/residual ``[M, H]``, deltas ``[M, N, H]``.

        Returns the fused states ``[M, H]`` and weights ``[M, heads, N]`` (before dropout). ``residual=None``
        means the deltas are full adapter outputs. ``adapter_indices`` says which of the layer's adapters the N
        deltas are, when only a subset is fused; the weights are then renormalised over that subset.
        """
        raise NotImplementedError

    def combine(
        self, weights: torch.Tensor, deltas: torch.Tensor | FactoredDeltas, residual: torch.Tensor | None
    ) -> torch.Tensor:
        """The fused states ``[M, H]`` for given weights ``[M, heads, N]``: what :meth:`fuse_deltas` does with
        the weights it computed, and what a :class:`~fusionlab.fusion.override.WeightOverride` reuses with
        weights set by hand. The plain weighted sum here; attention fusion adds its value projection."""
        return weighted_sum(self.dropout(weights), deltas, residual).squeeze(1)

    def regularization_loss(self) -> torch.Tensor:
        """Extra training loss of this layer (zero unless the method defines one)."""
        return torch.zeros(())


def weighted_sum(
    weights: torch.Tensor, deltas: torch.Tensor | FactoredDeltas, residual: torch.Tensor | None
) -> torch.Tensor:
    """``residual * sum(weights) + weights @ deltas`` for weights ``[M, heads, N]``: returns ``[M, heads, H]``.

    The residual is scaled by the weights' sum rather than added as is, so the result stays exact when dropout
    has zeroed some weights. ``deltas`` is ``[M, N, H]`` or, from a model's forward pass, factored deltas whose
    up-projection is folded into the sum (see :class:`~fusionlab.adapters.layer.FactoredDeltas`).
    """
    base = None if residual is None else residual.unsqueeze(1) * weights.sum(dim=-1, keepdim=True)
    if isinstance(deltas, FactoredDeltas):
        return deltas.mix(weights, base)
    out = torch.bmm(weights, deltas)
    return out if base is None else out + base
