"""A named bank of task adapters, one bottleneck adapter per transformer layer and task.

The manager is what the original notebook calls ``AdapterManager``: built from ``{name: AdapterConfig}``,
callable on hidden states to get ``{name: output}``, printable, freezable. Built standalone it holds one layer
of adapters (enough to experiment with); a :class:`~fusionlab.model.FusionModel` gives it one adapter per
transformer layer of its encoder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from fusionlab.adapters.layer import (
    BottleneckAdapter,
    FactoredDeltas,
    StackedAdapters,
    factor_stacked,
    snapshot_cache_mode,
    stack_adapters,
)
from fusionlab.config import AdapterConfig


class TaskAdapter(nn.Module):
    """All layers' adapters of one task, with the config they were built from."""

    def __init__(self, hidden_size: int, config: AdapterConfig, num_layers: int) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(
            BottleneckAdapter(hidden_size, config.adapter_size, config.non_linearity, config.dropout, config.init_std)
            for _ in range(num_layers)
        )

    def is_untrained(self) -> bool:
        """True while every up-projection is still zero, i.e. the adapter is still the identity."""
        return all(not layer.up.weight.any() and not layer.up.bias.any() for layer in self.layers)


class AdapterManager(nn.Module):
    """Named task adapters for every layer, run together in one batched pass per layer."""

    def __init__(
        self,
        hidden_size: int,
        adapter_configs: dict[str, AdapterConfig] | None = None,
        freeze_adapters: bool = False,
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"hidden_size and num_layers must be positive, got {hidden_size} and {num_layers}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.freeze_adapters = freeze_adapters
        self.stacks: dict[tuple[str, tuple[str, ...]], StackedAdapters] | None = None
        """Stacked weights per (layer, adapters), kept only in an inference snapshot (see
        :mod:`fusionlab.inference_snapshot`); ``None``: rebuilt in every call, as training needs."""
        self.adapters = nn.ModuleDict()
        for name, config in (adapter_configs or {}).items():
            self.add_adapter(name, config)

    # -- the bank --------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.adapters.keys())

    @property
    def configs(self) -> dict[str, AdapterConfig]:
        return {name: adapter.config for name, adapter in self.adapters.items()}

    def add_adapter(self, name: str, config: AdapterConfig) -> TaskAdapter:
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"adapter name must be a non-empty string without '.', got {name!r}")
        if name in self.adapters:
            raise ValueError(f"an adapter named {name!r} already exists")
        if hasattr(self.adapters, name):  # torch keeps modules as attributes: "half" or "train" would shadow a method
            raise ValueError(f"{name!r} cannot name an adapter: it is the name of a torch module method")
        adapter = TaskAdapter(self.hidden_size, config, self.num_layers)
        adapter.requires_grad_(not self.freeze_adapters)
        self.adapters[name] = adapter
        return adapter

    def remove_adapter(self, name: str) -> None:
        self.require(name)
        del self.adapters[name]

    def set_num_layers(self, num_layers: int) -> None:
        """Give every adapter ``num_layers`` layers; only allowed while all adapters are untrained."""
        if num_layers == self.num_layers:
            return
        trained = [name for name, a in self.adapters.items() if not a.is_untrained()]
        if trained:
            raise ValueError(
                f"this AdapterManager has {self.num_layers} layer(s) per adapter but the model has {num_layers}; "
                f"adapters {trained} are already trained, so they cannot be re-laid for another model"
            )
        self.num_layers = num_layers
        for name, adapter in list(self.adapters.items()):
            fresh = TaskAdapter(self.hidden_size, adapter.config, num_layers)
            fresh.requires_grad_(adapter.layers[0].down.weight.requires_grad)
            self.adapters[name] = fresh

    def freeze(self, names: Iterable[str] | None = None, frozen: bool = True) -> None:
        """Stop (or, with ``frozen=False``, restart) gradient updates for the named adapters (all if None)."""
        for name in self.names if names is None else list(names):
            self.require(name)
            self.adapters[name].requires_grad_(not frozen)

    def require(self, name: str) -> None:
        """Raise a ``KeyError`` listing the known adapters unless ``name`` is one of them."""
        if name not in self.adapters:
            known = ", ".join(self.names) or "none"
            raise KeyError(f"no adapter named {name!r} (known adapters: {known})")

    # -- running ----------------------------------------------------------------------------------------
    def forward(
        self, hidden_states: torch.Tensor, adapter_names: Sequence[str] | None = None, layer: int = 0
    ) -> dict[str, torch.Tensor]:
        """Each named adapter's output ``x + delta(x)`` at ``layer``, as ``{name: tensor}``."""
        names = list(self.names if adapter_names is None else adapter_names)
        shape = hidden_states.shape
        deltas = self.layer_deltas(hidden_states.reshape(-1, shape[-1]), names, layer)
        return {name: hidden_states + deltas[:, i].reshape(shape) for i, name in enumerate(names)}

    def layer_deltas(
        self, hidden: torch.Tensor, names: Sequence[str], layer: int, factored: bool = False
    ) -> torch.Tensor | FactoredDeltas:
        """Deltas of the named adapters at ``layer`` for ``hidden`` [M, H], as [M, N, H], in one batched pass.

        ``factored=True`` returns them as :class:`~fusionlab.adapters.layer.FactoredDeltas` (bottleneck
        activations and the stacked weights), which is all fusion needs and much cheaper than [M, N, H].

        The stacked weights are rebuilt on every call, never cached. A cache keyed on tensor identity and
        in-place version counters served stale weights: the fused AdamW that transformers' ``Trainer`` picks by
        default, and edits through ``p.data``, change a parameter without bumping its version, so every dev
        evaluation during training read the adapters of the first one. Stacking copies ``N * R * H`` numbers
        per layer, a small fraction of the ``M * N * R * H`` multiply-adds that running the adapters costs
        (``bench/fusion_overhead.py`` measures both), and is correct whatever changed the weights.
        """
        for name in names:
            if name not in self.adapters:
                self.require(name)
        key = str(layer + self.num_layers if layer < 0 else layer)  # ModuleList keys; negatives count from the end
        blocks = [self.adapters[n].layers._modules[key] for n in names]
        if len(blocks) == 1 and not factored:
            return blocks[0].delta(hidden).unsqueeze(1)
        deltas = factor_stacked(self._stacked(key, names, blocks), hidden)
        return deltas if factored else deltas.materialize()

    def _stacked(self, key: str, names: Sequence[str], blocks: list[BottleneckAdapter]) -> StackedAdapters:
        if self.stacks is None:
            return stack_adapters(blocks)
        cache_key = (key, tuple(names))
        if cache_key not in self.stacks:
            with snapshot_cache_mode():
                self.stacks[cache_key] = stack_adapters(blocks)
        return self.stacks[cache_key]

    # -- inspection ---------------------------------------------------------------------------------------
    def num_parameters(self, name: str) -> int:
        self.require(name)
        return sum(p.numel() for p in self.adapters[name].parameters())

    def adapter_info(self) -> list[dict]:
        """One row per adapter: name, task, size, layers, parameters, trainable."""
        rows = []
        for name, adapter in self.adapters.items():
            cfg = adapter.config
            rows.append(
                {
                    "name": name,
                    "task_name": cfg.task_name,
                    "task_type": cfg.task_type,
                    "adapter_size": cfg.adapter_size,
                    "layers": self.num_layers,
                    "parameters": self.num_parameters(name),
                    "trainable": any(p.requires_grad for p in adapter.parameters()),
                }
            )
        return rows

    def print_adapter_info(self) -> None:
        print(
            f"AdapterManager: {len(self.adapters)} adapter(s), hidden size {self.hidden_size}, "
            f"{self.num_layers} layer(s) each"
        )
        for row in self.adapter_info():
            state = "trainable" if row["trainable"] else "frozen"
            print(
                f"  {row['name']:<16} task={row['task_name']:<16} type={row['task_type']:<20} "
                f"size={row['adapter_size']:<4} params={row['parameters']:>10,}  {state}"
            )

    def state_dict_for(self, name: str) -> dict[str, torch.Tensor]:
        """The named adapter's tensors, keyed ``layers.<i>.<down|up>.<weight|bias>``."""
        self.require(name)
        return {k: v.detach() for k, v in self.adapters[name].state_dict().items()}

    def content_hash(self, name: str) -> str:
        """SHA-256 over the adapter's tensors (names, dtypes, shapes and bytes): changes iff the weights do."""
        return tensors_hash(self.state_dict_for(name))


def tensors_hash(tensors: dict[str, torch.Tensor]) -> str:
    """Order-independent content hash of named tensors."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
