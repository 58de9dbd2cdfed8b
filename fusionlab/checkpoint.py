"""Saving and loading adapters and fusions: safetensors for tensors, JSON for everything else.

An **adapter checkpoint** holds one task adapter (all layers) with its head, its config and the SHA-256 of its
adapter weights. A **fusion checkpoint** holds the fusion layers and the target head, plus the names and content
hashes of the adapters it was trained with, but not the adapters themselves: those stay in their own
checkpoints and are shared between fusions. Loading a fusion checks every adapter's hash, so a fusion is never
silently evaluated on adapters that changed after it was trained.

Nothing here unpickles: ``safetensors`` files hold only tensors, and the JSON is parsed by ``json``.
Directories are written next to their final path and renamed into place, so an interrupted save never leaves a
directory that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fusionlab.adapters.manager import AdapterManager, tensors_hash
from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig
from fusionlab.workspace import CHECKPOINT_MARKER as META_FILE
from fusionlab.workspace import VERSIONS_DIR, atomic_directory

ADAPTER_WEIGHTS = "adapter.safetensors"
FUSION_WEIGHTS = "fusion.safetensors"
FORMAT_VERSION = 1
MAX_META_BYTES = 4 << 20
"""Metadata is a few kB (the largest, a fusion's, holds its dev curve); more is not a checkpoint of ours."""
M = TypeVar("M", bound="FusionModel")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or does not fit what it is loaded with."""


class FusionModel(Protocol):
    """What saving and loading need of a model (:class:`fusionlab.model.FusionModel` is one). The model class
    assembles itself and calls this module; this module never imports it, so the two cannot form a circle."""

    adapter_manager: AdapterManager
    heads: nn.ModuleDict
    model_config: ModelConfig
    hidden_size: int
    num_layers: int
    fusion_config: FusionConfig | None
    fusion_layers: nn.ModuleList | None
    fusion_head: nn.Module | None

    def __init__(self, model_config: ModelConfig, *args: Any, **kwargs: Any) -> None: ...

    def add_adapter(self, name: str, config: AdapterConfig) -> None: ...

    def add_fusion(self, config: FusionConfig) -> None: ...


def _prefixed(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _unprefixed(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _load_into(module: nn.Module, tensors: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """Strict load with a message that says which checkpoint does not fit, instead of a bare key list."""
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(f"{path}: {what} does not fit this model (missing {missing}, unexpected {unexpected})")
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: {what} does not fit this model: {err}") from err


def read_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a checkpoint directory, checked field by field.

    Every reader can index what it needs: a malformed file (a field missing, of the wrong type, a config that
    does not validate) raises :class:`CheckpointError` naming the file and the field, never a ``KeyError`` or
    ``AttributeError`` deep inside a page. The configs come back complete (defaults filled in).
    """
    path = Path(path)
    meta_file = path / META_FILE
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path}: the directory does not exist")
    if not meta_file.is_file():
        raise CheckpointError(f"{path} is not a fusionlab checkpoint (no {META_FILE}); it may be incomplete")
    if meta_file.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(
            f"{meta_file} is {meta_file.stat().st_size:,} bytes; metadata is at most {MAX_META_BYTES:,}"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{meta_file} is not valid JSON: {err}") from err
    return _checked_meta(meta, meta_file)


_MISSING = object()


def _field(data: Any, key: str, kind: type | tuple[type, ...], meta_file: Path, where: str = "") -> Any:
    """``data[key]``, which must exist and be of ``kind`` (a bool is not an int here)."""
    value = data.get(key, _MISSING)
    if value is _MISSING:
        raise CheckpointError(f"{meta_file}: field {where}{key!r} is missing")
    if not isinstance(value, kind) or (
        isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CheckpointError(f"{meta_file}: field {where}{key!r} must be {wanted}, got {type(value).__name__}")
    return value


def _config(data: dict, key: str, cls: type, meta_file: Path, required: tuple[str, ...] = (), where: str = "") -> dict:
    """A config field, validated by its own class and returned complete."""
    raw = _field(data, key, dict, meta_file, where)
    for name in required:
        _field(raw, name, object, meta_file, f"{where}{key}.")
    try:
        return cls.from_dict(raw).to_dict()
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{meta_file}: field {where}{key!r} is invalid: {err}") from err


def _checked_meta(meta: Any, meta_file: Path) -> dict:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_file} must hold a JSON object, got {type(meta).__name__}")
    kind = meta.get("kind")
    if kind not in ("adapter", "fusion"):
        raise CheckpointError(f"{meta_file}: unknown checkpoint kind {kind!r}")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{meta_file}: field 'format_version' must be int, got {type(version).__name__}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{meta_file} was written by a newer fusionlab (format {version})")
    meta["model_config"] = _config(meta, "model_config", ModelConfig, meta_file, ("model_name_or_path",))
    for key in ("hidden_size", "num_layers"):
        if _field(meta, key, int, meta_file) <= 0:
            raise CheckpointError(f"{meta_file}: field {key!r} must be positive, got {meta[key]}")
    meta["extra"] = meta.get("extra") or {}
    _field(meta, "extra", dict, meta_file)
    if "weights_sha256" in meta:
        _field(meta, "weights_sha256", str, meta_file)
    if kind == "adapter":
        _field(meta, "name", str, meta_file)
        _field(meta, "content_hash", str, meta_file)
        meta["adapter_config"] = _config(meta, "adapter_config", AdapterConfig, meta_file)
        return meta
    meta["fusion_config"] = _config(meta, "fusion_config", FusionConfig, meta_file, ("fusion_method", "adapter_names"))
    entries = _field(meta, "adapters", list, meta_file)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CheckpointError(f"{meta_file}: field 'adapters[{i}]' must be an object, got {type(entry).__name__}")
        _field(entry, "name", str, meta_file, f"adapters[{i}].")
        _field(entry, "content_hash", str, meta_file, f"adapters[{i}].")
        if "adapter_config" in entry:
            entry["adapter_config"] = _config(
                entry, "adapter_config", AdapterConfig, meta_file, where=f"adapters[{i}]."
            )
    names = [entry["name"] for entry in entries]
    if names != meta["fusion_config"]["adapter_names"]:
        raise CheckpointError(
            f"{meta_file}: field 'adapters' names {names}, but fusion_config.adapter_names is "
            f"{meta['fusion_config']['adapter_names']}"
        )
    return meta


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the weights file's fingerprint, recorded at save and checked at load)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_weights_file(path: Path, meta: dict) -> None:
    """The weights file must be the one saved with this metadata: one flipped byte anywhere (head included)
    is refused. Checkpoints from before the fingerprint was recorded are checked by content hash instead."""
    expected = meta.get("weights_sha256")
    if expected is not None and path.is_file() and file_sha256(path) != expected:
        raise CheckpointError(
            f"{path} does not match the SHA-256 recorded when it was saved ({expected[:12]}…): the file was "
            "changed or is corrupt; retrain it, or restore it from a copy"
        )


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err


# -- adapters -----------------------------------------------------------------------------------------------
def save_adapter(model: FusionModel, name: str, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write adapter ``name`` (every layer) and its head to ``directory``; returns the directory."""
    manager = model.adapter_manager
    manager.require(name)
    tensors = _prefixed("adapter", manager.adapters[name]) | _prefixed("head", model.heads[name])
    meta = {
        "kind": "adapter",
        "format_version": FORMAT_VERSION,
        "name": name,
        "adapter_config": manager.configs[name].to_dict(),
        "model_config": model.model_config.to_dict(),
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "content_hash": manager.content_hash(name),
        "extra": extra or {},
    }
    keep_version(Path(directory))
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS))
        meta["weights_sha256"] = file_sha256(tmp / ADAPTER_WEIGHTS)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Path(directory)


def _adapter_tensors(path: Path, meta: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    _check_weights_file(path / ADAPTER_WEIGHTS, meta)
    tensors = _read_tensors(path / ADAPTER_WEIGHTS)
    return _unprefixed(tensors, "adapter"), _unprefixed(tensors, "head")


def read_adapter_tensors(directory: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """An adapter checkpoint's metadata, adapter weights and head weights, checked, without building a model."""
    path = Path(directory)
    meta = read_meta(path)
    if meta["kind"] != "adapter":
        raise CheckpointError(f"{path} holds a {meta['kind']}, not an adapter")
    adapter_state, head_state = _adapter_tensors(path, meta)
    # The hash is of the weights as a model holds them (float32); a pack stores them in float16.
    if tensors_hash({k: v.float() for k, v in adapter_state.items()}) != meta["content_hash"]:
        raise CheckpointError(
            f"{path}: the adapter's weights do not match the content hash recorded when it was saved "
            f"({meta['content_hash'][:12]}…): the file was changed or is corrupt"
        )
    return meta, adapter_state, head_state


def load_adapter_into(model: FusionModel, directory: str | os.PathLike, name: str | None = None) -> str:
    """Add the adapter saved in ``directory`` (and its head) to ``model``; returns the adapter's name."""
    path = Path(directory)
    meta = read_meta(path)
    if meta["kind"] != "adapter":
        raise CheckpointError(f"{path} holds a {meta['kind']}, not an adapter")
    _check_fits(model, meta, path)
    name = name or meta["name"]
    adapter_state, head_state = _adapter_tensors(path, meta)
    model.add_adapter(name, AdapterConfig.from_dict(meta["adapter_config"]))
    try:
        _load_into(model.adapter_manager.adapters[name], adapter_state, f"adapter {name!r}", path)
        _load_into(model.heads[name], head_state, f"head of adapter {name!r}", path)
        if model.adapter_manager.content_hash(name) != meta["content_hash"]:
            raise CheckpointError(
                f"{path}: the adapter's weights do not match the content hash recorded when it was saved "
                f"({meta['content_hash'][:12]}…): the file was changed or is corrupt"
            )
    except CheckpointError:
        model.adapter_manager.remove_adapter(name)
        del model.heads[name]
        raise
    return name


# -- versions: an adapter or a fusion replaced under its own name ---------------------------------------------


def version_hash(directory: Path, meta: dict) -> str | None:
    """What tells two versions of the checkpoint at ``directory`` apart: an adapter's content hash (what fusions
    pin), a fusion's weights file SHA-256 (hashed afresh for one saved before it was recorded; None if absent)."""
    if meta["kind"] == "adapter":
        return meta["content_hash"]
    weights = directory / FUSION_WEIGHTS
    return meta.get("weights_sha256") or (file_sha256(weights) if weights.is_file() else None)


def version_dir(checkpoint_dir: Path, version: str) -> Path:
    """Where version ``version`` (:func:`version_hash`) of checkpoint ``checkpoint_dir.name`` is kept once replaced."""
    return checkpoint_dir.parent / VERSIONS_DIR / checkpoint_dir.name / version[:16]


def keep_version(checkpoint_dir: Path) -> Path | None:
    """Copy the adapter or fusion checkpoint at ``checkpoint_dir`` (about to be replaced) to its version
    directory; returns it, or None if there is nothing to keep. The one path both kinds are versioned by."""
    try:
        meta = read_meta(checkpoint_dir)
    except CheckpointError:
        return None
    version = version_hash(checkpoint_dir, meta)
    if version is None:
        return None
    target = version_dir(checkpoint_dir, version)
    if not (target / META_FILE).is_file():
        with atomic_directory(target) as tmp:
            for file in checkpoint_dir.iterdir():
                if file.is_file():
                    shutil.copy2(file, tmp / file.name)
    return target


def workspace_root_of(checkpoint_dir: Path) -> Path:
    """The workspace a checkpoint directory belongs to: ``<root>/<kind>s/<name>`` or, for a kept version,
    ``<root>/<kind>s/.versions/<name>/<hash>`` (a fusion finds its adapters under ``<root>/adapters``)."""
    path = checkpoint_dir.resolve()
    return path.parents[3] if path.parent.parent.name == VERSIONS_DIR else path.parent.parent


def pinned_adapter_dir(adapter_dir: Path, content_hash: str) -> Path | None:
    """The checkpoint directory of adapter ``adapter_dir.name`` whose weights have ``content_hash``: the
    latest version if it is that one, else the kept earlier version, else None (from metadata alone)."""
    for candidate in (adapter_dir, version_dir(adapter_dir, content_hash)):
        try:
            if read_meta(candidate).get("content_hash") == content_hash:
                return candidate
        except CheckpointError:
            continue
    return None


def _check_fits(model: FusionModel, meta: dict, path: Path) -> None:
    if meta["hidden_size"] != model.hidden_size or meta["num_layers"] != model.num_layers:
        raise CheckpointError(
            f"{path} was trained on a model with {meta['num_layers']} layers of size {meta['hidden_size']} "
            f"({meta['model_config']['model_name_or_path']}); this model has {model.num_layers} of "
            f"size {model.hidden_size}"
        )


# -- fusions ------------------------------------------------------------------------------------------------
def save_fusion(model: FusionModel, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the fusion layers, the target head and the identity (name + hash) of every fused adapter."""
    if model.fusion_config is None or model.fusion_layers is None or model.fusion_head is None:
        raise CheckpointError("this model has no fusion to save")
    manager = model.adapter_manager
    names = model.fusion_config.adapter_names
    meta = {
        "kind": "fusion",
        "format_version": FORMAT_VERSION,
        "fusion_config": model.fusion_config.to_dict(),
        "model_config": model.model_config.to_dict(),
        "hidden_size": model.hidden_size,
        "num_layers": model.num_layers,
        "adapters": [
            {"name": n, "content_hash": manager.content_hash(n), "adapter_config": manager.configs[n].to_dict()}
            for n in names
        ],
        "extra": extra or {},
    }
    tensors = _prefixed("fusion_layers", model.fusion_layers) | _prefixed("fusion_head", model.fusion_head)
    keep_version(Path(directory))
    with atomic_directory(directory) as tmp:
        save_file(tensors, str(tmp / FUSION_WEIGHTS))
        meta["weights_sha256"] = file_sha256(tmp / FUSION_WEIGHTS)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return Path(directory)


def adapter_mismatches(meta: dict, found: Mapping[str, str | None]) -> tuple[list[str], list[str]]:
    """Which adapters a fusion checkpoint needs are missing (``found`` has no hash for them) and which differ
    from the weights it was trained with (another content hash): the one rule behind "this fusion cannot be
    loaded", used when loading and when the dashboard lists a workspace from metadata alone."""
    missing = [e["name"] for e in meta["adapters"] if found.get(e["name"]) is None]
    changed = [e["name"] for e in meta["adapters"] if found.get(e["name"]) not in (None, e["content_hash"])]
    return missing, changed


def _find_adapter_dir(name: str, fusion_path: Path, adapters_dir: Path | None, adapter_paths: Mapping) -> Path:
    if name in adapter_paths:
        return Path(adapter_paths[name])
    root = adapters_dir if adapters_dir is not None else workspace_root_of(fusion_path) / "adapters"
    return root / name


def load_model(
    model_class: type[M],
    directory: str | os.PathLike,
    adapters_dir: str | os.PathLike | None = None,
    adapter_paths: Mapping[str, str | os.PathLike] | None = None,
    encoder: nn.Module | None = None,
) -> M:
    """Rebuild a ``model_class`` (a :class:`fusionlab.model.FusionModel`) from an adapter or a fusion checkpoint.

    For a fusion, each adapter is looked up in ``adapter_paths[name]``, else ``adapters_dir/name``, else
    ``<workspace>/adapters/name`` (the workspace the fusion's directory, or its kept version's, is in). A missing
    adapter, or one whose weights changed since the fusion was trained, raises :class:`CheckpointError` naming it.
    """
    path = Path(directory)
    meta = read_meta(path)
    model_config = ModelConfig.from_dict(meta["model_config"])
    if meta["kind"] == "adapter":
        model = model_class(model_config, encoder=encoder)
        _check_fits(model, meta, path)
        load_adapter_into(model, path)
        return model

    fusion_config = FusionConfig.from_dict(meta["fusion_config"])
    adapter_dirs = {
        entry["name"]: _find_adapter_dir(
            entry["name"], path, Path(adapters_dir) if adapters_dir else None, adapter_paths or {}
        )
        for entry in meta["adapters"]
    }
    missing = [f"{n} (looked in {d})" for n, d in adapter_dirs.items() if not (d / META_FILE).is_file()]
    if missing:
        raise CheckpointError(f"fusion {path.name!r} needs adapters that are missing: {', '.join(missing)}")
    for entry in meta["adapters"]:  # the exact version it was trained with, kept when the adapter was retrained
        pinned = pinned_adapter_dir(adapter_dirs[entry["name"]], entry["content_hash"])
        if pinned is not None:
            adapter_dirs[entry["name"]] = pinned

    manager = AdapterManager(meta["hidden_size"], num_layers=meta["num_layers"])
    model = model_class(model_config, adapter_manager=manager, encoder=encoder)
    _check_fits(model, meta, path)
    found: dict[str, str | None] = {}
    for entry in meta["adapters"]:
        load_adapter_into(model, adapter_dirs[entry["name"]], entry["name"])
        found[entry["name"]] = manager.content_hash(entry["name"])
    _, changed = adapter_mismatches(meta, found)
    if changed:
        expected = {e["name"]: e["content_hash"] for e in meta["adapters"]}
        described = [
            f"{n} at {adapter_dirs[n]} (expected {expected[n][:12]}, found {(found[n] or '')[:12]})" for n in changed
        ]
        raise CheckpointError(
            f"fusion {path.name!r} was trained with different adapter weights; changed since: {', '.join(described)}"
        )
    try:
        model.add_fusion(fusion_config)
    except ValueError as err:  # e.g. adapters with different non-linearities: refused before any forward pass
        raise CheckpointError(f"fusion {path.name!r} cannot be built: {err}") from err
    _check_weights_file(path / FUSION_WEIGHTS, meta)
    tensors = _read_tensors(path / FUSION_WEIGHTS)
    _load_into(model.fusion_layers, _unprefixed(tensors, "fusion_layers"), "fusion layers", path)  # type: ignore[arg-type]
    _load_into(model.fusion_head, _unprefixed(tensors, "fusion_head"), "fusion head", path)  # type: ignore[arg-type]
    return model
