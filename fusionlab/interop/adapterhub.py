"""Bottleneck adapters in and out of AdapterHub's ``adapters`` library (1.x), computing exactly what they did.

An AdapterHub adapter folder (``model.save_adapter(dir, name)``) holds ``adapter_config.json`` and the weights,
``adapter.safetensors`` or ``pytorch_adapter.bin``. fusionlab reads the bottleneck ("seq_bn") family when its
adapter sits where fusionlab's do, after a BERT-like layer's feed-forward block, and refuses every other
configuration with the field that differs: an adapter after the attention sub-layer too (``double_seq_bn``,
"houlsby"), parallel adapters, adapter-internal LayerNorms, gating, PHM layers, invertible adapters,
``leave_out`` layers, learned scaling. With ``h`` the block's output, ``x`` its input and ``LN`` its LayerNorm,
AdapterHub computes (``adapters`` 1.3, ``methods/bottleneck.py``):

- ``original_ln_before=True`` (the ``seq_bn`` default, "pfeiffer"): ``LN(A(LN(h + x)) + h + x)``, fusionlab's
  ``pfeiffer`` placement;
- ``original_ln_before=False``: ``LN(A(h) + h + x)``, fusionlab's own ``ffn_output`` placement,

where ``A(z) = s * (W_up f(W_down z + b_down) + b_up)``; a numeric scaling ``s`` is folded into the up-projection.
``tests/fixtures/adapterhub/`` holds adapters saved by the library with the hidden states it computed, which
the tests reproduce. The ``.bin`` form is read with ``torch.load(weights_only=True)``: tensors only, never an
arbitrary unpickle. Prediction heads are not carried across (an imported adapter gets an untrained head, and the
checkpoint says so): a fusion trains its own head, and a single-adapter head can be trained on the Train page.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fusionlab.config import NON_LINEARITIES, AdapterConfig, check_name

CONFIG_FILE = "adapter_config.json"
SAFETENSORS_FILE = "adapter.safetensors"
PICKLE_FILE = "pytorch_adapter.bin"
MAX_FILE_BYTES = 512 * 1024**2
"""Adapter files larger than this are refused before reading (a bottleneck adapter of BERT-large is ~25 MB)."""
LIBRARY_VERSION = "adapters.1.3.0"
"""The version an export claims: the one whose saved files and numbers ``tests/fixtures/adapterhub`` holds."""
MODEL_CLASSES = {
    "bert": ("bert", "BertAdapterModel"),
    "roberta": ("roberta", "RobertaAdapterModel"),
    "xlm-roberta": ("roberta", "XLMRobertaAdapterModel"),
    "electra": ("electra", "ElectraAdapterModel"),
}
"""Architectures whose feed-forward block fusionlab and AdapterHub both wrap the same way: the prefix of their
weights in AdapterHub's flex-head model, and that model's class (what ``save_adapter`` records)."""
MODEL_TYPES = tuple(MODEL_CLASSES)

REQUIRED = {
    "mh_adapter": False,
    "output_adapter": True,
    "original_ln_after": True,
    "is_parallel": False,
    "ln_before": False,
    "ln_after": False,
    "use_gating": False,
    "phm_layer": False,
    "cross_adapter": False,
}
"""Bottleneck options an import must find at these values, and why each other value is refused."""
WHY = {
    "mh_adapter": "the adapter also sits after the attention sub-layer (double_seq_bn, 'houlsby')",
    "output_adapter": "the adapter does not sit after the feed-forward block",
    "original_ln_after": "the block's own LayerNorm is not applied after the adapter",
    "is_parallel": "a parallel adapter reads the block's input, not its output",
    "ln_before": "the adapter has a LayerNorm of its own before it",
    "ln_after": "the adapter has a LayerNorm of its own after it",
    "use_gating": "the adapter is gated",
    "phm_layer": "the adapter's projections are PHM (hypercomplex) layers",
    "cross_adapter": "a cross-attention adapter",
}
# Exported configs carry every BnConfig field, as the library writes them (so it reads them back unchanged).
EXPORT_DEFAULTS = {
    "adapter_residual_before_ln": False,
    "cross_adapter": False,
    "dropout": 0.0,
    "factorized_phm_W": True,
    "factorized_phm_rule": False,
    "hypercomplex_nonlinearity": "glorot-uniform",
    "init_weights": "bert",
    "init_weights_seed": None,
    "inv_adapter": None,
    "inv_adapter_reduction_factor": None,
    "is_parallel": False,
    "learn_phm": True,
    "leave_out": [],
    "ln_after": False,
    "ln_before": False,
    "mh_adapter": False,
    "original_ln_after": True,
    "output_adapter": True,
    "phm_bias": True,
    "phm_c_init": "normal",
    "phm_dim": 4,
    "phm_init_range": 0.0001,
    "phm_layer": False,
    "phm_rank": 1,
    "residual_before_ln": True,
    "scaling": 1.0,
    "shared_W_phm": False,
    "shared_phm_rule": True,
    "stochastic_depth": 0.0,
    "use_gating": False,
}
_KEY = re.compile(
    r"^(?P<prefix>(?:[A-Za-z_]+\.)?)encoder\.layer\.(?P<layer>\d+)\.output\.adapters\.(?P<name>[^.]+)\."
    r"(?P<part>adapter_down\.0|adapter_up)\.(?P<kind>weight|bias)$"
)
_PARTS = {"adapter_down.0": "down", "adapter_up": "up"}


class AdapterHubError(ValueError):
    """An AdapterHub adapter fusionlab cannot read faithfully; the message names the file and the field."""


@dataclass(frozen=True)
class HubAdapter:
    """An AdapterHub bottleneck adapter, read and checked: fusionlab's config and weights for it."""

    name: str
    config: AdapterConfig
    state: dict[str, torch.Tensor]
    """fusionlab's keys: ``layers.<i>.down.weight`` …"""
    hidden_size: int
    num_layers: int
    model_type: str
    model_name: str | None
    weights_file: str


# -- reading ---------------------------------------------------------------------------------------------------
def read_adapterhub(directory: str | Path) -> HubAdapter:
    """Read and check the AdapterHub adapter saved in ``directory``; :class:`AdapterHubError` says what differs."""
    folder = Path(directory)
    if not folder.is_dir():
        raise AdapterHubError(f"{folder} is not a directory (expected a folder written by save_adapter)")
    outer = _read_config(folder / CONFIG_FILE)
    options = outer["config"]
    placement = _check_options(options, folder / CONFIG_FILE)
    non_linearity = _non_linearity(options, "version" in outer, folder / CONFIG_FILE)
    weights_path, tensors = _read_weights(folder)
    name, layers = _layers(tensors, weights_path)
    hidden = int(layers[0]["down.weight"].shape[1])
    if outer.get("hidden_size") not in (None, hidden):
        raise AdapterHubError(
            f"{weights_path}: hidden_size is {outer['hidden_size']!r} but the weights are {hidden} wide"
        )
    size = _bottleneck(layers, hidden, options, weights_path)
    scale = float(options.get("scaling", 1.0))
    state = {}
    for i, layer in enumerate(layers):
        state[f"layers.{i}.down.weight"] = layer["down.weight"]
        state[f"layers.{i}.down.bias"] = layer["down.bias"]
        state[f"layers.{i}.up.weight"] = layer["up.weight"] * scale if scale != 1.0 else layer["up.weight"]
        state[f"layers.{i}.up.bias"] = layer["up.bias"] * scale if scale != 1.0 else layer["up.bias"]
    config = AdapterConfig(
        adapter_size=size, task_name=name, non_linearity=non_linearity, init_std=0.0, placement=placement
    )
    return HubAdapter(
        name=outer.get("name") or name,
        config=config,
        state=state,
        hidden_size=hidden,
        num_layers=len(layers),
        model_type=outer["model_type"],
        model_name=outer.get("model_name"),
        weights_file=weights_path.name,
    )


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise AdapterHubError(f"{path} is missing: an AdapterHub adapter folder holds {CONFIG_FILE} and its weights")
    try:
        outer = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterHubError(f"{path} is not readable JSON: {err}") from err
    if not isinstance(outer, dict) or not isinstance(outer.get("config"), dict):
        raise AdapterHubError(f"{path}: expected an object with a 'config' object (AdapterHub's adapter_config.json)")
    model_type = outer.get("model_type")
    if model_type not in MODEL_TYPES:
        raise AdapterHubError(
            f"{path}: model_type is {model_type!r}; fusionlab imports adapters of {', '.join(MODEL_TYPES)} models"
        )
    return outer


def _check_options(options: dict, path: Path) -> str:
    """The fusionlab placement these bottleneck options amount to, or the first option that has none."""
    architecture = options.get("architecture")
    if architecture not in (None, "bottleneck"):
        raise AdapterHubError(f"{path}: config.architecture is {architecture!r}; only bottleneck adapters import")
    for field, wanted in REQUIRED.items():
        found = options.get(field, wanted)
        if found != wanted:
            raise AdapterHubError(
                f"{path}: config.{field} is {json.dumps(found)}: {WHY[field]}; fusionlab places one adapter after "
                "the feed-forward block and cannot compute what this one computes"
            )
    if options.get("inv_adapter"):
        raise AdapterHubError(f"{path}: config.inv_adapter is set: an invertible adapter on the embeddings")
    if options.get("leave_out"):
        raise AdapterHubError(f"{path}: config.leave_out is {options['leave_out']}: fusionlab adapts every layer")
    scaling = options.get("scaling", 1.0)
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not math.isfinite(scaling):
        raise AdapterHubError(f"{path}: config.scaling is {scaling!r}: only a fixed number is supported")
    if not options.get("original_ln_before", False):
        return "ffn_output"
    if options.get("residual_before_ln", True) is not True:
        raise AdapterHubError(
            f"{path}: config.residual_before_ln is {json.dumps(options.get('residual_before_ln'))}: with "
            "original_ln_before the adapter's residual must be the block's output before the LayerNorm (true)"
        )
    return "pfeiffer"


def _non_linearity(options: dict, versioned: bool, path: Path) -> str:
    name = str(options.get("non_linearity", "relu")).lower()
    name = "swish" if name == "silu" else name
    if name == "gelu" and not versioned:
        raise AdapterHubError(
            f"{path}: non_linearity 'gelu' in a file without a version (adapter-transformers) meant the tanh "
            "approximation (gelu_new), which fusionlab does not have"
        )
    if name not in NON_LINEARITIES:
        raise AdapterHubError(f"{path}: config.non_linearity is {name!r}; fusionlab has {', '.join(NON_LINEARITIES)}")
    return name


def _read_weights(folder: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """The weights, from safetensors if present, else the ``.bin`` through ``torch.load(weights_only=True)``."""
    for file in (SAFETENSORS_FILE, PICKLE_FILE):
        path = folder / file
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            raise AdapterHubError(
                f"{path} is {path.stat().st_size:,} bytes; adapters over {MAX_FILE_BYTES:,} are refused"
            )
        try:
            if file == SAFETENSORS_FILE:
                tensors = load_file(str(path))
            else:  # tensors only: weights_only refuses any object a crafted pickle would build
                tensors = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # safetensors and the restricted unpickler raise their own error types
            raise AdapterHubError(f"{path} cannot be read as adapter weights: {err}") from err
        if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
            raise AdapterHubError(f"{path} does not hold a flat dictionary of tensors")
        return path, tensors
    raise AdapterHubError(f"{folder} holds neither {SAFETENSORS_FILE} nor {PICKLE_FILE}")


def _layers(tensors: dict[str, torch.Tensor], path: Path) -> tuple[str, list[dict[str, torch.Tensor]]]:
    """The adapter's name and, per layer in order, its four tensors; any other key is refused by name."""
    names: set[str] = set()
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.match(key)
        if match is None:
            raise AdapterHubError(
                f"{path}: unexpected weight {key!r}; fusionlab imports only the feed-forward block's adapter "
                "(keys like bert.encoder.layer.0.output.adapters.<name>.adapter_down.0.weight)"
            )
        names.add(match["name"])
        part = f"{_PARTS[match['part']]}.{match['kind']}"
        layer = found.setdefault(int(match["layer"]), {})
        if part in layer:
            raise AdapterHubError(f"{path}: layer {match['layer']}'s {part} is saved twice (under two prefixes)")
        layer[part] = tensor.float()
    if len(names) != 1:
        raise AdapterHubError(f"{path}: expected the weights of one adapter, found {sorted(names) or 'none'}")
    count = max(found) + 1
    for i in range(count):
        missing = {"down.weight", "down.bias", "up.weight", "up.bias"} - set(found.get(i, {}))
        if missing:
            raise AdapterHubError(f"{path}: layer {i} lacks {', '.join(sorted(missing))} (adapters in every layer)")
    return check_name(names.pop(), f"{path}: adapter name"), [found[i] for i in range(count)]


def _bottleneck(layers: list[dict[str, torch.Tensor]], hidden: int, options: dict, path: Path) -> int:
    sizes = {tuple(layer["down.weight"].shape) for layer in layers}
    if len(sizes) != 1:
        raise AdapterHubError(f"{path}: the layers' bottlenecks differ ({sorted(sizes)}); fusionlab uses one size")
    size, width = sizes.pop()
    for i, layer in enumerate(layers):
        shapes = [tuple(layer[k].shape) for k in ("down.bias", "up.weight", "up.bias")]
        if width != hidden or shapes != [(size,), (hidden, size), (hidden,)]:
            raise AdapterHubError(f"{path}: layer {i}'s shapes do not fit hidden size {hidden} and bottleneck {size}")
    factor = options.get("reduction_factor")
    if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor <= 0:
        raise AdapterHubError(f"{path}: reduction_factor must be positive, got {factor}")
    if isinstance(factor, (int, float)) and not isinstance(factor, bool) and int(hidden // factor) != size:
        raise AdapterHubError(
            f"{path}: reduction_factor {factor} means a bottleneck of {int(hidden // factor)}, not {size}"
        )
    return size


# -- writing ----------------------------------------------------------------------------------------------------
def reduction_factor(hidden_size: int, size: int) -> float:
    """The factor AdapterHub turns back into this bottleneck (``int(hidden // factor) == size``): exact when the
    size divides the width, else one half-step up (``hidden / size`` itself can round to ``size - 1``)."""
    factor = hidden_size / size if hidden_size % size == 0 else hidden_size / (size + 0.5)
    if int(hidden_size // factor) != size:
        raise AdapterHubError(f"no reduction factor gives a bottleneck of {size} at hidden size {hidden_size}")
    return factor


def export_adapterhub(
    name: str,
    config: AdapterConfig,
    state: dict[str, torch.Tensor],
    hidden_size: int,
    model_type: str,
    model_name: str,
    directory: str | Path,
) -> Path:
    """Write a fusionlab adapter as AdapterHub's ``save_adapter`` would: ``adapter_config.json`` and
    ``adapter.safetensors`` (load it with ``model.load_adapter(dir, use_safetensors=True)``)."""
    check_name(name, "adapter name")
    if model_type not in MODEL_CLASSES:
        raise AdapterHubError(
            f"AdapterHub's BERT-like adapters need a {', '.join(MODEL_TYPES)} model, not {model_type}"
        )
    factor = reduction_factor(hidden_size, config.adapter_size)
    options = EXPORT_DEFAULTS | {
        "non_linearity": config.non_linearity,
        "original_ln_before": config.placement == "pfeiffer",
        "reduction_factor": int(factor) if factor == int(factor) else factor,
    }
    prefix, model_class = MODEL_CLASSES[model_type]
    tensors = {}
    for key, tensor in state.items():
        match = re.fullmatch(r"layers\.(\d+)\.(down|up)\.(weight|bias)", key)
        if match is None:
            raise AdapterHubError(f"unexpected fusionlab adapter weight {key!r}")
        part = "adapter_down.0" if match[2] == "down" else "adapter_up"
        tensors[f"{prefix}.encoder.layer.{match[1]}.output.adapters.{name}.{part}.{match[3]}"] = tensor.contiguous()
    outer = {
        "config": options,
        "hidden_size": hidden_size,
        "model_class": model_class,
        "model_name": model_name,
        "model_type": model_type,
        "name": name,
        "version": LIBRARY_VERSION,
    }
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / SAFETENSORS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(outer, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder
