"""The notebook's "Understanding fusion mechanisms" section, made interactive.

Adapter outputs come either from a seeded random generator (as in the notebook) or from a real sentence: the
hidden state that enters the adapters at a chosen layer of a trained fusion, passed through its real trained
adapters. Either set is fused by attention or weighted fusion at a chosen temperature, and the result says how
the softmax spread its weight over the adapters (per head for attention) and what the fused output looks
like next to each adapter's own output.

With real outputs and the fusion's own method, the trained fusion layer of that transformer layer is used
(only its temperature changes); otherwise a freshly initialised, seeded layer is, as in the notebook.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fusionlab import fusion_weights
from fusionlab.config import FusionConfig
from fusionlab.dashboard.inference import Predictor
from fusionlab.fusion import FusionLayer, build_fusion, fusion_class, learned_weight_methods
from fusionlab.model import FusionModel


def methods() -> tuple[str, ...]:
    """The methods the page demonstrates: every registered one that learns its weights (read when drawn)."""
    return learned_weight_methods()


def has_heads(method: str) -> bool:
    """Whether the heads picker means anything for ``method`` (declared on its class)."""
    return fusion_class(method).has_heads


RANDOM_ADAPTER_NAMES = tuple(f"random {letter}" for letter in "ABCDEF")
"""The random outputs' names: random vectors, not a sentiment or an NLI adapter (task names would suggest they were)."""
HEAD_CHOICES = (1, 2, 4, 8)


@dataclass(frozen=True)
class AdapterOutputs:
    """N adapter outputs for T tokens, the query they are fused with, and where they came from."""

    names: tuple[str, ...]
    outputs: torch.Tensor  # [T, N, H]
    query: torch.Tensor | None  # [T, H]; None: the mean of the outputs stands in (no hidden state)
    tokens: tuple[str, ...]
    source: str
    fusion_config: FusionConfig | None = None  # the real fusion's config and its layer's weights, if any
    fusion_state: dict[str, torch.Tensor] | None = None
    residual: torch.Tensor | None = None
    """[T, H] for real outputs: the state ``h`` each output adds its adapter's change to; equal to ``query`` except
    for the ``pfeiffer`` placement, whose adapters read ``LayerNorm(h + x)``. None for random outputs."""


def random_outputs(num_adapters: int = 3, tokens: int = 10, hidden_size: int = 384, seed: int = 0) -> AdapterOutputs:
    """Seeded standard-normal adapter outputs, as in the notebook's section 2 (one sentence, no batch)."""
    if not 2 <= num_adapters <= len(RANDOM_ADAPTER_NAMES):
        raise ValueError(f"num_adapters must be between 2 and {len(RANDOM_ADAPTER_NAMES)}, got {num_adapters}")
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(tokens, num_adapters, hidden_size, generator=generator)
    return AdapterOutputs(
        names=RANDOM_ADAPTER_NAMES[:num_adapters],
        outputs=outputs,
        query=None,
        tokens=tuple(f"token {i + 1}" for i in range(tokens)),
        source=f"random normal outputs (seed {seed}), {tokens} tokens × hidden size {hidden_size}",
    )


def layer_outputs(
    model: FusionModel, inputs: dict[str, torch.Tensor], names: Sequence[str], layer: int, kept: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At ``layer`` (0-based), for the first ``kept`` tokens of the one input in ``inputs``: what the adapters read
    (the fusion's query), the hidden state their changes are added to, and each adapter's output (that state + its
    change) as ``[T, N, H]``; the fusion over ``names`` active in the layers below, exactly as at inference.

    The two states are one for fusionlab's own adapters; they differ for the ``pfeiffer`` placement (imported from
    AdapterHub), whose adapters read ``LayerNorm(h + x)`` but change ``h``: fusing "query + changes" there would
    not be what the model computes.
    """
    out = model(**inputs, adapter_names=list(names), output_adapter_inputs=True)
    query = out.adapter_inputs[layer][0, :kept].float()  # [T, H]
    residual = out.adapter_residuals[layer][0, :kept].float()
    deltas = model.adapter_manager.layer_deltas(query, list(names), layer)  # [T, N, H]
    return query, residual, residual.unsqueeze(1) + deltas


def real_outputs(predictor: Predictor, text: str | None, text_pair: str | None, layer: int) -> AdapterOutputs:
    """The real adapters' outputs for a real sentence at transformer ``layer`` (0-based) of the fusion (see
    :func:`layer_outputs`)."""
    info = predictor.info
    if not 0 <= layer < info.num_layers:
        raise ValueError(f"layer must be between 0 and {info.num_layers - 1}, got {layer}")
    text, text_pair = predictor.check_input(text, text_pair)
    model = predictor.model
    with predictor.lock, torch.inference_mode():
        encoded = predictor.encode(text, text_pair)
        query, residual, outputs = layer_outputs(model, encoded.inputs, info.adapters, layer, encoded.kept_tokens)
    state = None
    if model.fusion_layers is not None:
        state = {k: v.detach().clone() for k, v in model.fusion_layers[layer].state_dict().items()}
    return AdapterOutputs(
        names=info.adapters,
        outputs=outputs,
        query=query,
        tokens=encoded.tokens,
        source=f"real adapters of fusion {info.name!r} at layer {layer + 1} of {info.num_layers}",
        fusion_config=model.fusion_config,
        fusion_state=state,
        residual=residual,
    )


@dataclass(frozen=True)
class OutputStats:
    """Summary of one ``[T, H]`` output: element mean and std, mean per-token L2 norm."""

    mean: float
    std: float
    norm: float


def _stats(x: torch.Tensor) -> OutputStats:
    return OutputStats(float(x.mean()), float(x.std()), float(x.norm(dim=-1).mean()))


@dataclass(frozen=True)
class MechanicsResult:
    """How a fusion layer weighted the adapters, and what it produced."""

    method: str
    temperature: float
    names: tuple[str, ...]
    tokens: tuple[str, ...]
    weights: np.ndarray  # [T, heads, N] softmax weights
    fused: OutputStats
    adapters: tuple[OutputStats, ...]
    cosine: np.ndarray  # [N] mean over tokens of cos(fused, adapter output), or of their changes (see compared)
    num_parameters: int
    layer_source: str
    output_source: str
    compared: str = "output"
    """What the statistics and similarities describe: the outputs themselves (random outputs), or for a real
    sentence each output's *change* to the hidden state. Real outputs are hidden state + a small adapter change,
    so the outputs themselves are all ~0.998 alike and say nothing; their changes differ."""
    trained_layer: bool = False
    """Whether the layer is a trained fusion's (else a fresh one, as the method initialises it)."""
    hidden_size: int = 0

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[1])

    @property
    def per_adapter(self) -> np.ndarray:
        """[N] mean weight of each adapter over tokens and heads."""
        return self.weights.mean(axis=(0, 1))

    @property
    def per_head(self) -> np.ndarray:
        """[heads, N] mean weight of each adapter per head, over tokens."""
        return self.weights.mean(axis=0)

    @property
    def per_token(self) -> np.ndarray:
        """[T, N] weight of each adapter per token, heads averaged (the reduction every page uses)."""
        return fusion_weights.per_token([torch.from_numpy(self.weights)[None]])[0, 0].numpy()


def _fusion_layer(
    outputs: AdapterOutputs, method: str, temperature: float, num_heads: int, seed: int
) -> tuple[FusionLayer, str, bool]:
    """The layer to fuse with, where it comes from in words, and whether it is a trained one."""
    hidden, num = outputs.outputs.shape[-1], outputs.outputs.shape[1]
    config = outputs.fusion_config
    if config is not None and outputs.fusion_state is not None and config.fusion_method == method:
        # Rebuilt from its weights rather than copied: a trained layer may hold caches that do not deep-copy.
        layer = build_fusion(config, hidden)
        layer.load_state_dict(outputs.fusion_state)
        source, trained = f"the trained {method} fusion layer", True
    else:
        torch.manual_seed(seed)
        cls = fusion_class(method)
        layer = cls.illustration(hidden, num, num_heads)
        details = [f"{num_heads} head{'s' if num_heads > 1 else ''}"] if cls.has_heads else []
        details += [cls.illustration_note] if cls.illustration_note else []
        source, trained = f"a fresh {method} fusion layer ({', '.join([*details, f'seed {seed}'])})", False
    layer.temperature = float(temperature)
    return layer.eval(), source, trained


def fuse(
    outputs: AdapterOutputs, method: str, temperature: float = 1.0, num_heads: int = 1, seed: int = 0
) -> MechanicsResult:
    """Fuse ``outputs`` with attention or weighted fusion at ``temperature`` and summarise the result.

    ``num_heads`` and ``seed`` only matter for a fresh layer; a trained layer keeps its own heads and weights.
    """
    if method not in methods():
        raise ValueError(f"method must be one of {', '.join(methods())}, got {method!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if fusion_class(method).has_heads and outputs.outputs.shape[-1] % num_heads:
        raise ValueError(f"{num_heads} heads do not divide the hidden size {outputs.outputs.shape[-1]}")
    layer, layer_source, trained = _fusion_layer(outputs, method, temperature, num_heads, seed)
    with torch.inference_mode():
        result = layer.fuse(outputs.outputs, query=outputs.query)
        fused, each = result.hidden_states, outputs.outputs  # [T, H], [T, N, H]
        if outputs.residual is not None:  # a real sentence: compare what the adapters and the fusion change
            fused, each = fused - outputs.residual, each - outputs.residual.unsqueeze(1)
        cosine = torch.stack([F.cosine_similarity(fused, each[:, i], dim=-1).mean() for i in range(len(outputs.names))])
    return MechanicsResult(
        method=method,
        temperature=float(temperature),
        names=outputs.names,
        tokens=outputs.tokens,
        weights=result.weights.float().numpy(),
        fused=_stats(fused),
        adapters=tuple(_stats(each[:, i]) for i in range(len(outputs.names))),
        cosine=cosine.numpy(),
        num_parameters=sum(p.numel() for p in layer.parameters()) + sum(b.numel() for b in layer.buffers()),
        layer_source=layer_source,
        output_source=outputs.source,
        compared="output" if outputs.residual is None else "change to the hidden state",
        trained_layer=trained,
        hidden_size=int(outputs.outputs.shape[-1]),
    )


def stats_rows(result: MechanicsResult) -> list[dict[str, object]]:
    """One table row per adapter (what the notebook printed): its output's (or change's) statistics, how close
    the fused one is to it, and its mean weight; the fused output has its own line (:func:`fused_summary`)."""
    return [
        {
            "adapter": name,
            "mean": s.mean,
            "std": s.std,
            "L2 norm per token": s.norm,
            "cosine to fused": float(c),
            "mean weight": float(w),
        }
        for name, s, c, w in zip(result.names, result.adapters, result.cosine, result.per_adapter)
    ]


def fused_summary(result: MechanicsResult) -> str:
    """The fused output's (or change's) statistics, in words."""
    f = result.fused
    return f"Fused {result.compared}: mean {f.mean:.4f}, std {f.std:.4f}, L2 norm per token {f.norm:.3f}."


def has_value_projection(method: str) -> bool:
    """Whether ``method`` passes the weighted sum through a learned value projection (declared on its class)."""
    return fusion_class(method).has_value_projection


def scale_note(result: MechanicsResult) -> str:
    """Why the fused output (or change) is as long as it is next to the adapters' (their L2 norms per token).

    Without a value projection the fusion is a weighted average (weights summing to 1), never longer on a token
    than the longest adapter's. With one, the weighted sum goes through a learned matrix and bias: identity in a
    fresh layer, but a trained one can scale and turn it, and for a real sentence it acts on the hidden state
    inside that sum too, so the fused change can be several times any adapter's.
    """
    method = result.method.capitalize()
    what = "output" if result.compared == "output" else "change"
    if not has_value_projection(result.method):
        return (
            f"{method} fusion has no value projection: the fused {what} is the adapters' {what}s weighted by weights "
            f"that sum to 1, so on every token it is no longer than the longest of them."
        )
    size = f"{result.hidden_size}×{result.hidden_size} " if result.hidden_size else ""
    projection = f"a value projection (a learned {size}matrix and a bias)"
    if not result.trained_layer:
        return (
            f"{method} fusion passes the weighted sum of the adapters' outputs through {projection}. A fresh layer's "
            f"starts as the identity, so here the fused {what} is that weighted sum itself."
        )
    inside = ", and it acts on the hidden state inside that sum too" if result.compared != "output" else ""
    text = (
        f"{method} fusion passes the weighted sum of the adapters' outputs through {projection}, trained with the "
        f"fusion: it can scale and turn the sum{inside}, so the fused {what} is not bounded by the adapters' {what}s."
    )
    longest = max((a.norm for a in result.adapters), default=0.0)
    if longest > 0 and result.fused.norm > 1.05 * longest:
        text += (
            f" Here it is {result.fused.norm / longest:.1f}× as long as the longest adapter's (L2 norm per token "
            f"{result.fused.norm:.2f} against at most {longest:.2f})."
        )
    return text
