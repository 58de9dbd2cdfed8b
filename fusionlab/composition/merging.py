"""Parameter merging: several trained bottleneck adapters folded into one adapter (no extra inference cost).

The methods a user would pick instead of fusion (issue "Composition lab"), over the same frozen adapters. An
adapter's parameters are its own task vector: an untrained adapter is the identity (its up-projection starts at
zero), and every method below is applied tensor by tensor to the adapters' parameters (down/up weights and
biases of every layer), as PEFT and the merging papers do for other adapter kinds:

- ``average``: the plain mean.
- ``task_arithmetic`` (Ilharco et al., 2023): ``scale`` × the sum.
- ``ties`` (Yadav et al., 2023): trim each adapter to its ``density`` largest-magnitude entries, elect a sign
  per entry (the sign of the summed trimmed values), and average only the entries that agree with it.
- ``dare`` (Yu et al., 2024): drop each entry with probability ``1 - density`` and rescale the survivors by
  ``1 / density``, then average; seeded, so a merge is reproducible.
- ``linear``: ``sum_i coefficients[i] * adapter_i``, the composition LoraHub (Huang et al., 2024) searches the
  coefficients of (:mod:`fusionlab.composition.search`).

Merging is a heuristic for non-linear bottlenecks (the ReLU between down and up does not commute with a sum);
that is exactly what a comparison against fusion measures. Adapters of different shapes or non-linearities are
refused: their parameters do not line up.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from fusionlab.adapters.manager import AdapterManager
from fusionlab.config import AdapterConfig

if TYPE_CHECKING:
    from fusionlab.model import FusionModel

Merge = Callable[[list[torch.Tensor], "MergeOptions", torch.Generator], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class MergeOptions:
    """The knobs of the merging methods (each method reads the ones it has)."""

    scale: float = 1.0  # task arithmetic
    density: float = 0.2  # ties, dare: the fraction of entries kept
    seed: int = 0  # dare
    coefficients: tuple[float, ...] | None = None  # linear: one per adapter, in the order they are named

    def __post_init__(self) -> None:
        if self.coefficients is not None:
            object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
            if not all(math.isfinite(c) and abs(c) <= 10.0 for c in self.coefficients):
                raise ValueError(
                    f"MergeOptions.coefficients must be finite and at most 10 in size: {self.coefficients}"
                )
        if not 0.0 < self.density <= 1.0:
            raise ValueError(f"MergeOptions.density must be in (0, 1], got {self.density}")
        if not -10.0 <= self.scale <= 10.0:
            raise ValueError(f"MergeOptions.scale must be between -10 and 10, got {self.scale}")


def _average(tensors: list[torch.Tensor], options: MergeOptions, generator: torch.Generator) -> torch.Tensor:
    return torch.stack(tensors).mean(dim=0)


def _task_arithmetic(tensors: list[torch.Tensor], options: MergeOptions, generator: torch.Generator) -> torch.Tensor:
    return options.scale * torch.stack(tensors).sum(dim=0)


def _trim(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` fraction of entries with the largest magnitude (at least one), zero the rest."""
    keep = max(1, round(density * tensor.numel()))
    if keep >= tensor.numel():
        return tensor.clone()
    threshold = tensor.abs().flatten().kthvalue(tensor.numel() - keep + 1).values
    return torch.where(tensor.abs() >= threshold, tensor, torch.zeros_like(tensor))


def _ties(tensors: list[torch.Tensor], options: MergeOptions, generator: torch.Generator) -> torch.Tensor:
    trimmed = torch.stack([_trim(t, options.density) for t in tensors])
    sign = torch.sign(trimmed.sum(dim=0))
    agrees = (torch.sign(trimmed) == sign) & (trimmed != 0)
    count = agrees.sum(dim=0).clamp(min=1)
    return (trimmed * agrees).sum(dim=0) / count


def _dare(tensors: list[torch.Tensor], options: MergeOptions, generator: torch.Generator) -> torch.Tensor:
    kept = []
    for tensor in tensors:
        mask = torch.rand(tensor.shape, generator=generator) < options.density
        kept.append(tensor * mask / options.density)
    return torch.stack(kept).mean(dim=0)


def _linear(tensors: list[torch.Tensor], options: MergeOptions, generator: torch.Generator) -> torch.Tensor:
    if options.coefficients is None or len(options.coefficients) != len(tensors):
        raise ValueError(
            f"the linear merge needs one coefficient per adapter ({len(tensors)}), got {options.coefficients}"
        )
    weights = torch.tensor(options.coefficients, dtype=tensors[0].dtype).view(-1, *[1] * tensors[0].dim())
    return (weights * torch.stack(tensors)).sum(dim=0)


MERGE_METHODS: dict[str, Merge] = {
    "average": _average,
    "task_arithmetic": _task_arithmetic,
    "ties": _ties,
    "dare": _dare,
    "linear": _linear,
}
"""Method name → how it merges one parameter tensor across adapters (the one registry of merging methods)."""


def merged_state(
    manager: AdapterManager, names: Sequence[str], method: str, options: MergeOptions | None = None
) -> tuple[AdapterConfig, dict[str, torch.Tensor]]:
    """``method`` applied to the parameters of the adapters ``names``: the first adapter's config and the
    merged tensors (keyed as an adapter's ``state_dict``)."""
    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merging method {method!r}; known: {', '.join(MERGE_METHODS)}")
    names = list(names)
    if not names:
        raise ValueError("name at least one adapter to merge")
    for name in names:
        manager.require(name)
    configs = [manager.configs[name] for name in names]
    shape = {(c.adapter_size, c.non_linearity, c.placement) for c in configs}
    if len(shape) > 1:
        raise ValueError(
            f"adapters {names} differ in size, non-linearity or placement ({sorted(shape)}): they cannot be merged"
        )
    options = options or MergeOptions()
    generator = torch.Generator().manual_seed(options.seed)
    states = [manager.adapters[name].state_dict() for name in names]
    merged = {key: MERGE_METHODS[method]([s[key].float() for s in states], options, generator) for key in states[0]}
    return configs[0], {key: value.to(states[0][key].dtype) for key, value in merged.items()}


def merge_adapters(
    manager: AdapterManager,
    names: Sequence[str],
    method: str,
    merged_name: str,
    options: MergeOptions | None = None,
) -> None:
    """Add adapter ``merged_name`` to ``manager``: ``method`` applied to the parameters of the adapters ``names``.

    The merged adapter takes the first adapter's config (size, non-linearity) with ``task_name`` "merged": it
    belongs to no task until a head is trained on it (:func:`add_merged_adapter` gives it one).
    """
    config, state = merged_state(manager, names, method, options)
    adapter = manager.add_adapter(merged_name, dataclasses.replace(config, task_name="merged"))
    adapter.load_state_dict(state)


def add_merged_adapter(
    model: FusionModel,
    names: Sequence[str],
    method: str,
    merged_name: str,
    task_config: AdapterConfig,
    options: MergeOptions | None = None,
) -> None:
    """Add the merge of ``names`` to ``model`` as adapter ``merged_name`` with a fresh head for the task
    ``task_config`` describes (its task name, labels); size and non-linearity stay the merged adapters'."""
    config, state = merged_state(model.adapter_manager, names, method, options)
    fields = ("task_name", "task_type", "num_labels", "label_names")
    model.add_adapter(merged_name, dataclasses.replace(config, **{f: getattr(task_config, f) for f in fields}))
    model.adapter_manager.adapters[merged_name].load_state_dict(state)
