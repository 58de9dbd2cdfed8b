"""What if the fusion trusted one adapter more? Fusion weights set by hand, inside the model's fusion path.

A :class:`WeightOverride` names adapters and the weight each gets (in every layer, or in one); the adapters it does
not name keep their learned proportions, per token, scaled to share what is left, so the weights still sum to 1.
The fusion layer then mixes the adapters with these weights exactly as it mixes them with its own (attention
fusion's value projection included: :meth:`~fusionlab.fusion.base.FusionLayer.combine`). ``FusionModel(...,
fusion_weight_override=...)``, ``fusionlab predict --set-weight sst2=0.7`` and the Playground's "What if" panel
all go through it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

TOLERANCE = 1e-6


@dataclass(frozen=True)
class WeightOverride:
    """Adapter name → fusion weight in [0, 1] (their sum at most 1), in ``layer`` (0-based) or every layer."""

    weights: Mapping[str, float] = field(default_factory=dict)
    layer: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"the weight of {name} must be a number, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"the weight of {name} must be between 0 and 1, got {value:g}")
        if sum(self.weights.values()) > 1.0 + TOLERANCE:
            raise ValueError(f"the weights set by hand sum to {sum(self.weights.values()):.3g}; at most 1 is shared")
        if self.layer is not None and (
            isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0
        ):
            raise ValueError(f"the layer must be a layer number from 1, got {self.layer!r}")

    def applies_to(self, layer: int) -> bool:
        return self.layer is None or self.layer == layer

    def check(self, names: Sequence[str], num_layers: int) -> None:
        """Refuse, in the user's words, an adapter that is not fused here or a layer the model does not have."""
        unknown = [name for name in self.weights if name not in names]
        if unknown:
            raise ValueError(
                f"cannot set the weight of {', '.join(unknown)}: the fusion here is over {', '.join(names)}"
            )
        if self.layer is not None and self.layer >= num_layers:
            raise ValueError(f"layer {self.layer + 1} does not exist: the model has {num_layers} layers")
        if set(self.weights) == set(names) and abs(sum(self.weights.values()) - 1.0) > 1e-3:
            raise ValueError(
                f"every adapter's weight is set, so they must sum to 1, not {sum(self.weights.values()):.3g}"
            )

    def apply(self, learned: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
        """``learned`` weights ``[M, heads, N]`` over ``names`` with the set ones replaced and the others scaled
        to share the rest in their learned proportions (evenly where they had none)."""
        fixed = torch.zeros(len(names), dtype=learned.dtype, device=learned.device)
        is_set = torch.zeros(len(names), dtype=torch.bool, device=learned.device)
        for i, name in enumerate(names):
            if name in self.weights:
                fixed[i], is_set[i] = self.weights[name], True
        others = learned.masked_fill(is_set, 0.0)
        total = others.sum(dim=-1, keepdim=True)
        free = (~is_set).sum()
        rest = 1.0 - fixed.sum()
        if free == 0:
            return fixed.expand_as(learned).clone()
        even = (~is_set).to(learned.dtype) / free
        shares = torch.where(total > 0, others / total.clamp_min(torch.finfo(learned.dtype).tiny), even)
        return fixed + rest * shares


def parse_setting(items: Sequence[str], layer: int | None = None) -> WeightOverride:
    """``["sst2=0.7", "mnli=0.1"]`` (the CLI's ``--set-weight``) as an override; ``layer`` counted from 1."""
    if layer is not None and layer < 1:
        raise ValueError(f"--weight-layer {layer}: layers are counted from 1")
    weights = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--set-weight {item!r}: write ADAPTER=WEIGHT, e.g. sst2=0.7")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--set-weight {item!r}: {value!r} is not a number") from None
    return WeightOverride(weights, None if layer is None else layer - 1)
