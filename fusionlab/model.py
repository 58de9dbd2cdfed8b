"""The fusion model: a frozen encoder with task adapters and fusion inside every layer, and task heads.

Read top to bottom: construction (encoder, adapters, fusion layers, heads, hooks), the per-layer hook that
runs adapters and fusion, ``forward``, then parameter accounting. Saving and loading live in
:mod:`fusionlab.checkpoint`.

Which path a forward pass takes is decided by ``adapter_names``:

* one name, e.g. ``["sst2"]``: that adapter alone in every layer and its own head (the single-task model);
* several names: fusion over exactly those adapters and the fusion's target head. Any subset of the adapters
  the fusion was trained with may be given; the weights are renormalised over the subset (ablation).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from transformers.utils import ModelOutput

from fusionlab import checkpoint
from fusionlab.adapters.manager import AdapterManager
from fusionlab.base_model import ffn_blocks, ffn_output_modules, load_encoder
from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig
from fusionlab.fusion.override import WeightOverride
from fusionlab.fusion.registry import build_fusion
from fusionlab.heads import ClassificationHead, pool


@dataclass
class FusionModelOutput(ModelOutput):
    """HF-style output. ``fusion_weights``: one ``[batch, tokens, heads, adapters]`` tensor per layer, zero at
    padding positions; ``adapter_names`` says which adapter each last-axis index is."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    fusion_weights: tuple[torch.Tensor, ...] | None = None
    adapter_names: list[str] | None = None
    last_hidden_state: torch.Tensor | None = None
    adapter_inputs: tuple[torch.Tensor, ...] | None = None
    """With ``output_adapter_inputs=True``: per layer, the ``[batch, tokens, hidden]`` state the adapters read
    (the feed-forward output, before adapters, fusion and the residual LayerNorm; ``LayerNorm(h + x)`` for the
    ``pfeiffer`` placement)."""
    adapter_residuals: tuple[torch.Tensor, ...] | None = None
    """With ``output_adapter_inputs=True``: per layer, the feed-forward output ``h`` the adapters' changes are
    added to (the same tensors as ``adapter_inputs`` unless the placement is ``pfeiffer``)."""


@dataclass
class _ForwardContext:
    """What the layer hooks need to know about the forward pass in progress (per thread)."""

    names: list[str]
    fusion_indices: list[int] | None
    collect_weights: bool
    collect_inputs: bool = False
    skip_below: int = 0
    """AdapterDrop: layers below this index run as the plain encoder (no adapters, no fusion)."""
    placement: str = "ffn_output"
    """Where the active adapters read the feed-forward block (see :data:`fusionlab.config.PLACEMENTS`)."""
    block_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    """``pfeiffer`` placement: each layer's feed-forward block input ``x``, kept by the block's pre-hook."""
    weights: list[torch.Tensor] = field(default_factory=list)
    inputs: list[torch.Tensor] = field(default_factory=list)
    residuals: list[torch.Tensor] = field(default_factory=list)
    override: WeightOverride | None = None
    """Fusion weights set by hand (the what-if instrument), applied in the layers it names."""


_ACTIVE = threading.local()  # id(model) -> _ForwardContext; thread-local so a shared model serves many sessions


class FusionModel(nn.Module):
    """Frozen base encoder + per-layer task adapters + optional per-layer fusion + one head per task."""

    accepts_loss_kwargs = False  # tells transformers' Trainer not to pass num_items_in_batch to forward

    def __init__(
        self,
        model_config: ModelConfig | None = None,
        fusion_config: FusionConfig | None = None,
        adapter_manager: AdapterManager | None = None,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.model_config = model_config or ModelConfig()
        self.fusion_config = fusion_config
        self.base_model = encoder if encoder is not None else load_encoder(self.model_config.model_name_or_path)
        self.base_model.requires_grad_(False)
        self.hidden_size = int(self.base_model.config.hidden_size)
        hook_points = ffn_output_modules(self.base_model)
        self.num_layers = len(hook_points)

        manager = adapter_manager or AdapterManager(self.hidden_size, num_layers=self.num_layers)
        if manager.hidden_size != self.hidden_size:
            raise ValueError(
                f"the AdapterManager was built for hidden size {manager.hidden_size}, but "
                f"{self.model_config.model_name_or_path!r} has hidden size {self.hidden_size}"
            )
        manager.set_num_layers(self.num_layers)
        self.adapter_manager = manager
        self.heads = nn.ModuleDict({name: self._new_head(name) for name in manager.names})
        for name in manager.names:
            self.heads[name].requires_grad_(self._adapter_trainable(name))

        self.fusion_layers: nn.ModuleList | None = None
        self.fusion_head: ClassificationHead | None = None
        if fusion_config is not None:
            self._build_fusion(fusion_config)

        self._accepts_token_type_ids = "token_type_ids" in inspect.signature(self.base_model.forward).parameters
        self._hook_handles = [module.register_forward_hook(self._make_hook(i)) for i, module in enumerate(hook_points)]
        blocks = ffn_blocks(self.base_model)
        self._ffn_norms = [norm for _, norm in blocks] if blocks else None  # a plain list: not our parameters
        for i, (block, _) in enumerate(blocks or []):
            self._hook_handles.append(block.register_forward_pre_hook(self._make_block_hook(i), with_kwargs=True))
        _outside_inference_mode(self)

    is_inference_snapshot = False
    """Set by :func:`fusionlab.inference_snapshot.freeze_for_inference`: weights frozen, derived products kept."""

    def train(self, mode: bool = True) -> FusionModel:
        if mode and self.is_inference_snapshot:
            raise RuntimeError(
                "this model is an inference snapshot (its derived products are kept, so its weights must never "
                "change): load a fresh model to train"
            )
        return super().train(mode)

    def remove_hooks(self) -> None:
        """Detach this model from its encoder, so the encoder can serve another model (nothing else is undone)."""
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []

    # -- construction helpers ------------------------------------------------------------------------------
    def _num_labels(self, task: str) -> int:
        fusion = self.fusion_config
        if fusion is not None and task == fusion.target and fusion.num_labels is not None:
            return fusion.num_labels
        config = self.adapter_manager.configs.get(task)
        if config is not None and config.num_labels is not None:
            return config.num_labels
        return self.model_config.num_labels

    def _new_head(self, task: str) -> ClassificationHead:
        return ClassificationHead(self.hidden_size, self._num_labels(task), self.model_config.head_dropout)

    def _adapter_trainable(self, name: str) -> bool:
        return any(p.requires_grad for p in self.adapter_manager.adapters[name].parameters())

    def add_fusion(self, config: FusionConfig) -> None:
        """Add fusion layers over ``config.adapter_names`` (adapters already in the model) and a target head."""
        if self.fusion_config is not None:
            raise ValueError("this model already has a fusion; build another FusionModel for a second one")
        self.fusion_config = config
        self._build_fusion(config)
        # New modules start in training mode: the fusion follows the model's (no dropout in eval). Only the new
        # ones: the encoder keeps its own mode (transformers loads it in eval mode).
        self.fusion_layers.train(self.training)
        self.fusion_head.train(self.training)
        _outside_inference_mode(self)

    def _build_fusion(self, config: FusionConfig) -> None:
        missing = [n for n in config.adapter_names if n not in self.adapter_manager.adapters]
        if missing:
            raise ValueError(
                f"FusionConfig.adapter_names names adapters the manager does not have: {missing} "
                f"(it has {self.adapter_manager.names})"
            )
        for setting in ("non_linearity", "placement"):  # a layer runs the fused adapters as one batched module
            values = {name: getattr(self.adapter_manager.configs[name], setting) for name in config.adapter_names}
            if len(set(values.values())) > 1:
                used = ", ".join(f"{name} uses {value}" for name, value in values.items())
                raise ValueError(f"adapters fused together must share one {setting.replace('_', '-')}, but {used}")
        self.fusion_layers = nn.ModuleList(build_fusion(config, self.hidden_size) for _ in range(self.num_layers))
        self.fusion_head = ClassificationHead(
            self.hidden_size, self._num_labels(config.target), self.model_config.head_dropout
        )
        if config.freeze_adapters_during_fusion:
            self.adapter_manager.freeze(config.adapter_names)
            for name in config.adapter_names:
                self.heads[name].requires_grad_(False)

    def add_adapter(self, name: str, config: AdapterConfig) -> None:
        """Add a new (identity-initialised) task adapter to every layer, with its own head."""
        self.adapter_manager.add_adapter(name, config)
        self.heads[name] = self._new_head(name)
        self.adapter_manager.adapters[name].train(self.training)  # as in add_fusion: the new modules only
        self.heads[name].train(self.training)
        _outside_inference_mode(self)

    def remove_adapter(self, name: str) -> None:
        """Remove adapter ``name`` and its head (refused for an adapter the fusion fuses)."""
        if self.fusion_config is not None and name in self.fusion_config.adapter_names:
            raise ValueError(f"adapter {name!r} is fused by this model's fusion; it cannot be removed")
        self.adapter_manager.remove_adapter(name)
        del self.heads[name]

    # -- trainable parameters for the two training stages -------------------------------------------------
    def train_adapter_only(self, name: str) -> None:
        """Stage 1: only adapter ``name`` and its head learn; base, other adapters and fusion stay frozen."""
        self.requires_grad_(False)
        self.adapter_manager.freeze([name], frozen=False)
        self.heads[name].requires_grad_(True)

    def train_head_only(self, name: str) -> None:
        """Only adapter ``name``'s head learns; everything else stays frozen (a head on a merged adapter)."""
        self.adapter_manager.require(name)
        self.requires_grad_(False)
        self.heads[name].requires_grad_(True)

    def train_fusion_only(self) -> None:
        """Stage 2: the fusion layers and the target head learn; base and adapters stay frozen (unless the
        fusion config asks to keep adapters trainable)."""
        if self.fusion_config is None or self.fusion_layers is None or self.fusion_head is None:
            raise ValueError("this model has no fusion (build it with a FusionConfig)")
        self.requires_grad_(False)
        self.fusion_layers.requires_grad_(True)
        self.fusion_head.requires_grad_(True)
        if not self.fusion_config.freeze_adapters_during_fusion:
            self.adapter_manager.freeze(self.fusion_config.adapter_names, frozen=False)

    # -- activation (gradient) checkpointing -------------------------------------------------------------------
    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1, offload: bool = False
    ) -> None:
        """Recompute each encoder layer's activations in the backward pass instead of keeping them (what
        ``Trainer(activation_checkpointing=True)`` and the older ``gradient_checkpointing=True`` call).

        The adapters and fusion run inside the checkpointed layers, from hooks that read the forward pass's
        context; the recomputation happens later (in the backward pass, perhaps on another thread), so each
        checkpointed call carries its context with it and re-installs it while it recomputes (collecting no
        weights the second time). Only the non-reentrant variant is supported: the reentrant one gives the
        parameters inside a layer no gradient when its inputs (the frozen encoder's) do not require one.
        """
        if offload:
            raise ValueError("offloading checkpointed activations is not supported by fusionlab; use offload=False")
        kwargs = dict(activation_checkpointing_kwargs or {})
        if kwargs.get("use_reentrant", False):
            raise ValueError(
                "fusionlab supports non-reentrant activation checkpointing only (use_reentrant=False): with the "
                "reentrant variant the adapters and fusion layers inside a checkpointed layer get no gradient"
            )
        kwargs["use_reentrant"] = False
        checkpoint_func = functools.partial(self._checkpointed_call, kwargs)
        self.base_model._set_gradient_checkpointing(True, checkpoint_func, every_n_layers)

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1, offload: bool = False
    ) -> None:
        """transformers' older name for :meth:`activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        self.base_model._set_gradient_checkpointing(False)

    gradient_checkpointing_disable = activation_checkpointing_disable

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.base_model.modules())

    def _checkpointed_call(self, kwargs: dict, function, *args):
        """``torch.utils.checkpoint`` of one encoder layer, carrying this forward pass's context along."""
        contexts = _ACTIVE.__dict__.setdefault("contexts", {})
        context = contexts.get(id(self))
        replay = None
        if context is not None:
            replay = dataclasses.replace(
                context,
                collect_weights=False,
                collect_inputs=False,
                weights=[],
                inputs=[],
                residuals=[],
                block_inputs={},
            )
        calls = 0

        def run(*inner):
            nonlocal calls
            calls += 1
            active = context if calls == 1 else replay
            if active is None:
                return function(*inner)
            here = _ACTIVE.__dict__.setdefault("contexts", {})  # the backward pass may run on another thread
            previous = here.get(id(self))
            here[id(self)] = active
            try:
                return function(*inner)
            finally:
                if previous is None:
                    here.pop(id(self), None)
                else:
                    here[id(self)] = previous

        return torch.utils.checkpoint.checkpoint(run, *args, **kwargs)

    # -- the per-layer hook ---------------------------------------------------------------------------------
    def _make_hook(self, layer: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            context = getattr(_ACTIVE, "contexts", {}).get(id(self))
            if context is None or layer < context.skip_below:
                return None  # plain base-model call, or a dropped layer: leave the layer untouched
            return self._adapt_layer(layer, output, context)

        return hook

    def _make_block_hook(self, layer: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            context = getattr(_ACTIVE, "contexts", {}).get(id(self))
            if context is not None and context.placement == "pfeiffer" and layer >= context.skip_below:
                context.block_inputs[layer] = args[1] if len(args) > 1 else kwargs["input_tensor"]

        return hook

    def _adapter_source(self, layer: int, output: torch.Tensor, context: _ForwardContext) -> torch.Tensor:
        """What the adapters read: the feed-forward output ``h``, or ``LayerNorm(h + x)`` for ``pfeiffer``."""
        if context.placement != "pfeiffer":
            return output
        assert self._ffn_norms is not None  # checked in forward
        return self._ffn_norms[layer](output + context.block_inputs.pop(layer))

    def _adapt_layer(self, layer: int, output: torch.Tensor, context: _ForwardContext) -> torch.Tensor:
        """Run the active adapters (batched) on one layer's feed-forward output, then fuse them.

        The adapters' changes are added to the feed-forward output ``h``, whatever they read (see
        :meth:`_adapter_source`). Fusion layers that accept them get the deltas factored (bottleneck
        activations, see :class:`~fusionlab.adapters.layer.FactoredDeltas`); no ``[tokens, N, hidden]`` tensor
        is built then.
        """
        shape = output.shape
        source = self._adapter_source(layer, output, context)
        if context.collect_inputs:
            context.inputs.append(source.detach())
            context.residuals.append(output.detach())
        hidden = output.reshape(-1, shape[-1])
        read = source.reshape(-1, shape[-1])
        if context.fusion_indices is None:
            deltas = self.adapter_manager.layer_deltas(read, context.names, layer)  # [M, 1, H]
            return (hidden + deltas[:, 0]).view(shape)
        assert self.fusion_layers is not None
        fusion = self.fusion_layers[layer]
        factored = getattr(fusion, "accepts_factored_deltas", False)
        deltas = self.adapter_manager.layer_deltas(read, context.names, layer, factored=factored)
        fused, weights = fusion.fuse_deltas(read, deltas, hidden, context.fusion_indices)
        if context.override is not None and context.override.applies_to(layer):
            weights = context.override.apply(weights, context.names)
            fused = fusion.combine(weights, deltas, hidden)  # the same mixing, with the weights set by hand
        if context.collect_weights:
            context.weights.append(weights.view(*shape[:-1], *weights.shape[-2:]))
        return fused.view(shape)

    # -- forward ----------------------------------------------------------------------------------------------
    def resolve_adapters(self, adapter_names: Sequence[str] | None) -> tuple[list[str], list[int] | None]:
        """The adapters to run and, for fusion, their indices among the fusion's adapters (None: single task)."""
        if adapter_names is None:
            if self.fusion_config is not None:
                adapter_names = self.fusion_config.adapter_names
            elif len(self.adapter_manager.names) == 1:
                adapter_names = self.adapter_manager.names
            else:
                raise ValueError(
                    f"say which adapters to run: adapter_names=[...] (available: {self.adapter_manager.names})"
                )
        names = list(adapter_names)
        if not names:
            raise ValueError("adapter_names is empty: name at least one adapter")
        if len(set(names)) != len(names):
            raise ValueError(f"adapter_names has duplicates: {names}")
        for name in names:
            self.adapter_manager.require(name)
        if len(names) == 1:
            return names, None
        if self.fusion_config is None:
            raise ValueError(f"fusing {names} needs a fusion; this model has none (pass a FusionConfig)")
        trained = self.fusion_config.adapter_names
        outside = [n for n in names if n not in trained]
        if outside:
            raise ValueError(f"the fusion was trained over {trained}; it cannot fuse {outside}")
        return names, [trained.index(n) for n in names]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        adapter_names: Sequence[str] | None = None,
        labels: torch.Tensor | None = None,
        output_fusion_weights: bool = False,
        force_fusion: bool = False,
        output_adapter_inputs: bool = False,
        drop_first_layers: int = 0,
        fusion_weight_override: WeightOverride | None = None,
        **encoder_kwargs,
    ) -> FusionModelOutput:
        """Run the encoder with the named adapters (see the module docstring for which path is taken).

        One name runs that adapter alone with its own head. ``force_fusion=True`` sends even one name through
        the fusion layers and the fusion's head instead (fusion over a subset of one: an ablation, or the
        fusion layer's own cost). ``output_fusion_weights`` returns the fusion path's softmax weights,
        ``output_adapter_inputs`` the hidden state every layer's adapters read and the one their changes are
        added to (``adapter_inputs``, ``adapter_residuals``: for Mechanics).

        ``drop_first_layers=k`` is AdapterDrop (Rücklé et al., 2021) at inference: the first ``k`` layers run
        without adapters and fusion, saving their cost; ``0`` is the full model, exactly. The weights and inputs
        returned then cover the remaining layers only.

        ``fusion_weight_override`` sets some adapters' fusion weights by hand (every layer, or one): the others
        keep their learned proportions, scaled to share the rest, and the layer mixes with these weights as with
        its own (:mod:`fusionlab.fusion.override`); the weights returned are the ones used.
        """
        if getattr(self, "_is_replica", False):
            raise RuntimeError(
                "FusionModel does not run under torch.nn.DataParallel: its replicas would skip the adapters "
                "(the layer hooks belong to the original model). Train on several GPUs with DistributedDataParallel "
                "instead: `torchrun --nproc_per_node N your_script.py` or `accelerate launch`, which transformers' "
                "Trainer uses automatically; on one GPU, set CUDA_VISIBLE_DEVICES to a single device."
            )
        names, fusion_indices = self.resolve_adapters(adapter_names)
        if force_fusion and fusion_indices is None:
            trained = self.fusion_config.adapter_names if self.fusion_config is not None else []
            if names[0] not in trained:
                raise ValueError(
                    f"force_fusion=True needs a fusion over {names[0]!r}; this model's fusion is over {trained}"
                )
            fusion_indices = [trained.index(names[0])]
        if not 0 <= drop_first_layers <= self.num_layers:
            raise ValueError(f"drop_first_layers must be between 0 and {self.num_layers}, got {drop_first_layers}")
        if token_type_ids is not None and self._accepts_token_type_ids:
            encoder_kwargs["token_type_ids"] = token_type_ids
        collect_weights = output_fusion_weights and fusion_indices is not None
        if fusion_weight_override is not None:
            if fusion_indices is None:
                raise ValueError("setting fusion weights needs the fusion path: fuse two adapters or more")
            fusion_weight_override.check(names, self.num_layers)
        context = _ForwardContext(
            names, fusion_indices, collect_weights, output_adapter_inputs, drop_first_layers, self._placement(names)
        )
        context.override = fusion_weight_override
        contexts = _ACTIVE.__dict__.setdefault("contexts", {})
        contexts[id(self)] = context
        try:
            encoded = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **encoder_kwargs)
        finally:
            del contexts[id(self)]
        pooled = pool(encoded.last_hidden_state, attention_mask, self.model_config.pooling)
        head = self.heads[names[0]] if fusion_indices is None else self.fusion_head
        logits = head(pooled)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.view(-1))
            if fusion_indices is not None and self.training:
                loss = loss + self.value_regularization_loss()
        weights = None
        if context.collect_weights:
            weights = tuple(_mask_padding(w, attention_mask) for w in context.weights)
        return FusionModelOutput(
            loss=loss,
            logits=logits,
            fusion_weights=weights,
            adapter_names=names,
            last_hidden_state=encoded.last_hidden_state,
            adapter_inputs=tuple(context.inputs) if output_adapter_inputs else None,
            adapter_residuals=tuple(context.residuals) if output_adapter_inputs else None,
        )

    def _placement(self, names: Sequence[str]) -> str:
        """The one placement the adapters of a forward pass share (they run as one batched module)."""
        placements = {name: self.adapter_manager.configs[name].placement for name in names}
        if len(set(placements.values())) > 1:
            used = ", ".join(f"{name} reads {placement}" for name, placement in placements.items())
            raise ValueError(f"adapters run together must share one placement, but {used}")
        placement = next(iter(placements.values()))
        if placement == "pfeiffer" and self._ffn_norms is None:
            raise ValueError(
                f"the 'pfeiffer' placement needs the feed-forward block's LayerNorm, which fusionlab does not know "
                f"for a '{self.base_model.config.model_type}' model; it works with bert, roberta and electra models"
            )
        return placement

    def value_regularization_loss(self) -> torch.Tensor:
        """``lambda * sum_layers ||I - V||^2`` (zero unless ``FusionConfig.value_regularization`` > 0)."""
        if self.fusion_config is None or self.fusion_layers is None or not self.fusion_config.value_regularization:
            return torch.zeros(())
        total = sum(layer.regularization_loss() for layer in self.fusion_layers)
        return self.fusion_config.value_regularization * total

    # -- saving and loading (see fusionlab.checkpoint) ---------------------------------------------------------
    def save_pretrained(self, directory, adapter_name: str | None = None, extra: dict | None = None):
        """Save adapter ``adapter_name`` with its head, or, by default, the fusion (or the only adapter)."""
        if adapter_name is None and self.fusion_config is None:
            if len(self.adapter_manager.names) != 1:
                raise ValueError(f"say which adapter to save: adapter_name=... ({self.adapter_manager.names})")
            adapter_name = self.adapter_manager.names[0]
        if adapter_name is not None:
            return checkpoint.save_adapter(self, adapter_name, directory, extra)
        return checkpoint.save_fusion(self, directory, extra)

    @classmethod
    def from_pretrained(cls, directory, **kwargs) -> FusionModel:
        """Load an adapter or fusion checkpoint; see :func:`fusionlab.checkpoint.load_model` for the options."""
        return checkpoint.load_model(cls, directory, **kwargs)

    # -- labels ------------------------------------------------------------------------------------------------
    def label_names(self, adapter_names: Sequence[str] | None = None, force_fusion: bool = False) -> list[str]:
        """Names of the classes the head used for ``adapter_names`` predicts (``LABEL_i`` when unknown);
        ``force_fusion`` as in :meth:`forward`."""
        names, fusion_indices = self.resolve_adapters(adapter_names)
        fused = (fusion_indices is not None or force_fusion) and self.fusion_config is not None
        task = self.fusion_config.target if fused else names[0]  # type: ignore[union-attr]
        if fused and self.fusion_config.label_names:  # type: ignore[union-attr]
            return list(self.fusion_config.label_names)  # type: ignore[union-attr]
        config = self.adapter_manager.configs.get(task)
        if config is not None and config.label_names:
            return list(config.label_names)
        return [f"LABEL_{i}" for i in range(self._num_labels(task))]

    # -- parameter accounting -----------------------------------------------------------------------------------
    def get_adapter_parameters(self) -> Iterator[nn.Parameter]:
        return self.adapter_manager.parameters()

    def get_fusion_parameters(self) -> Iterator[nn.Parameter]:
        return iter(()) if self.fusion_layers is None else self.fusion_layers.parameters()

    def parameter_breakdown(self) -> dict:
        """Parameter counts: base, each adapter, fusion, each head, trainable and total."""

        def count(params) -> int:
            return sum(p.numel() for p in params)

        heads = {name: count(head.parameters()) for name, head in self.heads.items()}
        if self.fusion_head is not None:
            heads["fusion:" + self.fusion_config.target] = count(self.fusion_head.parameters())  # type: ignore[union-attr]
        return {
            "base": count(self.base_model.parameters()),
            "adapters": {name: self.adapter_manager.num_parameters(name) for name in self.adapter_manager.names},
            "fusion": count(self.get_fusion_parameters()),
            "heads": heads,
            "trainable": count(p for p in self.parameters() if p.requires_grad),
            "total": count(self.parameters()),
        }

    def print_model_info(self) -> None:
        info = self.parameter_breakdown()
        total = info["total"]

        def line(label: str, n: int) -> None:
            print(f"  {label:<28}{n:>14,}  ({100 * n / total:5.2f}%)")

        method = self.fusion_config.fusion_method if self.fusion_config else "none"
        print(
            f"FusionModel on {self.model_config.model_name_or_path} ({self.num_layers} layers, "
            f"hidden {self.hidden_size}), fusion: {method}"
        )
        line("base model (frozen)", info["base"])
        for name, n in info["adapters"].items():
            line(f"adapter {name}", n)
        line("fusion layers", info["fusion"])
        for name, n in info["heads"].items():
            line(f"head {name}", n)
        line("trainable", info["trainable"])
        print(f"  {'total':<28}{total:>14,}")


def _mask_padding(weights: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the fusion weights of padding tokens so that they never enter a plot or an average."""
    if attention_mask is None:
        return weights
    return weights * attention_mask[:, :, None, None].to(weights.dtype)


def _outside_inference_mode(module: nn.Module) -> None:
    """Replace tensors created under ``torch.inference_mode()`` with ordinary copies.

    A model built inside inference mode (a cached loader, a notebook cell under it) would otherwise hold
    inference tensors, which autograd refuses later ("Inference tensors cannot be saved for backward") and
    which cannot be updated outside inference mode. Cheap when there are none: only flags are read.
    """
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in sub._parameters.items():
                if param is not None and param.is_inference():
                    sub._parameters[name] = nn.Parameter(param.clone(), requires_grad=param.requires_grad)
            for name, buffer in sub._buffers.items():
                if buffer is not None and buffer.is_inference():
                    sub._buffers[name] = buffer.clone()
