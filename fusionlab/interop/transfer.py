"""AdapterHub adapters into a fusionlab workspace, and a workspace's adapters out to AdapterHub's format.

:mod:`fusionlab.interop.adapterhub` reads and writes the files; this module adds what a workspace needs: the
base model the adapter belongs to (checked against the adapter's hidden size and layer count), the task its head
is for, and an ordinary fusionlab adapter checkpoint that says where it came from.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from transformers import AutoConfig

from fusionlab.base_model import load_encoder, resolve_model_name
from fusionlab.checkpoint import read_adapter_tensors
from fusionlab.config import AdapterConfig, ModelConfig, check_name
from fusionlab.data import get_task
from fusionlab.interop.adapterhub import AdapterHubError, export_adapterhub, read_adapterhub
from fusionlab.model import FusionModel
from fusionlab.training.trainer import for_task
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace


def import_adapter(
    directory: str | Path,
    workspace: Workspace,
    name: str | None = None,
    task: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Import the AdapterHub adapter in ``directory`` into ``workspace`` as ``name`` (default: its own name).

    ``task`` (a registered task) gives the new head its labels; the head is untrained, as the checkpoint records:
    AdapterHub heads are not carried across. ``model_name`` defaults to the model the adapter names.
    """
    hub = read_adapterhub(directory)
    name = check_name(name or hub.name, "adapter name")
    target = workspace.adapter_dir(name)
    if (target / CHECKPOINT_MARKER).is_file():
        raise AdapterHubError(f"the workspace already has an adapter {name!r}; import it under another name")
    config = hub.config if task is None else for_task(hub.config, get_task(task))
    model_name = model_name or hub.model_name or ModelConfig().model_name_or_path
    encoder = load_encoder(model_name)
    if encoder.config.model_type != hub.model_type:
        raise AdapterHubError(
            f"the adapter was trained in a {hub.model_type} model; {model_name} is a {encoder.config.model_type}"
        )
    model = FusionModel(ModelConfig(model_name_or_path=model_name, num_labels=config.num_labels or 2), encoder=encoder)
    if (model.hidden_size, model.num_layers) != (hub.hidden_size, hub.num_layers):
        raise AdapterHubError(
            f"the adapter has {hub.num_layers} layers of width {hub.hidden_size}; {model_name} has "
            f"{model.num_layers} of width {model.hidden_size}: pass the model it was trained with (--model)"
        )
    model.add_adapter(name, dataclasses.replace(config, task_name=config.task_name if task else name))
    model.adapter_manager.adapters[name].load_state_dict(hub.state, strict=True)
    origin = {"library": "adapters", "folder": Path(directory).name, "weights": hub.weights_file, "name": hub.name}
    extra = {"imported_from": origin, "head": "untrained (AdapterHub heads are not imported)"}
    return model.save_pretrained(target, adapter_name=name, extra=extra)


def export_adapter(workspace: Workspace, name: str, directory: str | Path) -> Path:
    """Write the workspace's adapter ``name`` in AdapterHub's format to ``directory`` (the head stays behind)."""
    source = workspace.adapter_dir(check_name(name, "adapter name"))
    meta, state, _head = read_adapter_tensors(source)
    model_name = meta["model_config"]["model_name_or_path"]
    model_type = AutoConfig.from_pretrained(resolve_model_name(model_name)).model_type
    config = AdapterConfig.from_dict(meta["adapter_config"])
    return export_adapterhub(name, config, state, meta["hidden_size"], model_type, model_name, directory)
