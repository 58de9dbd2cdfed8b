"""The workspace side of a remote run's files: what a run reads is sent, what it made is published.

Cluster nodes hold no workspace (SQLite cannot live on a network filesystem, and a node may be anywhere), so
the dispatcher gathers a run's inputs into a bundle for Ray's object store — the exact adapter checkpoints a
fusion fuses (as they are at the moment the run starts), the target task's data files, the user's own data
file — and rewrites the config to find them under the node's temporary workspace. What the run saved comes
back the same way and is published here with the workspace's tmp-then-rename rule
(:func:`fusionlab.workspace.atomic_directory`), so a reader never sees half an artifact, and a version of an
adapter that a fusion was trained with is kept before a retrained one replaces it.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

from fusionlab.ray_backend.messages import NODE_ROOT, Files, check_place, pack
from fusionlab.runspec import run_task
from fusionlab.workspace import CHECKPOINT_MARKER, TMP_PREFIX, Workspace, atomic_directory

PACK_CARD = "card.json"
"""The file a pack artifact carries (:data:`fusionlab.pack.card.CARD_FILE`, named here so that publishing imports
nothing of the pack); such a directory is read-only."""
DATA_PLACE = "data"
INPUTS_PLACE = "inputs"


def _adapter_names(config: dict[str, Any]) -> list[str]:
    """The adapters a run reads: a fusion's ``adapters``, a comparison's ``options.adapters``."""
    options = config.get("options") if isinstance(config.get("options"), dict) else {}
    names = config.get("adapters") or options.get("adapters") or []
    return [name for name in names if isinstance(name, str)]


ARTIFACT_DIRS = {"adapter": "adapters", "fusion": "fusions", "comparison": "comparisons"}


def places_read(config: dict[str, Any]) -> set[str]:
    """The workspace places a run reads (the adapters it fuses)."""
    return {f"adapters/{name}" for name in _adapter_names(config)}


def places_written(kind: str, name: str) -> set[str]:
    """The workspace place a run of a known kind publishes (none for a kind this fusionlab does not know)."""
    from fusionlab.runspec import RUN_KINDS, spec_class

    if kind not in RUN_KINDS:
        return set()
    directory = ARTIFACT_DIRS.get(spec_class(kind).artifact)
    return {f"{directory}/{name}"} if directory and name else set()


def waits_for(config: dict[str, Any], kind: str, name: str, running: list[tuple[str, str]]) -> bool:
    """Whether a queued run must wait for one of the ``running`` runs (kind, name) to end: it reads what
    one of them will publish, or publishes the same place. The local worker runs the queue one run at a time, so
    a fusion queued after its adapter sees that adapter; run in parallel, queue order must still mean that."""
    mine_read, mine_written = places_read(config), places_written(kind, name)
    for other_kind, other_name in running:
        theirs = places_written(other_kind, other_name)
        if theirs & (mine_read | mine_written):
            return True
    return False


def _task_data_dir(config: dict[str, Any], task: str) -> Path | None:
    from fusionlab.data.loading import resolve_data_dir  # the data layer is heavy; only runs with a task need it

    root = resolve_data_dir(config.get("data_dir"))
    return root / task if root is not None and (root / task).is_dir() else None


def gather_inputs(workspace: Workspace, kind: str, config: dict[str, Any]) -> tuple[dict[str, Any], Files]:
    """The config as the node must read it, and the files it needs there.

    A task whose data this machine does not hold (read from the hub) is left to the node; so is an adapter the
    workspace lacks (the pack's adapters come with the installed package).
    """
    config = copy.deepcopy(config)
    files: Files = {}
    for name in _adapter_names(config):
        directory = workspace.adapter_dir(name)
        if (directory / CHECKPOINT_MARKER).is_file():
            files.update(pack(workspace.root, f"adapters/{name}"))
    task = run_task(kind, config)
    if task:
        data = _task_data_dir(config, task)
        if data is not None:
            files.update({f"{DATA_PLACE}/{place}": blob for place, blob in pack(data.parent, task).items()})
            config["data_dir"] = f"{NODE_ROOT}/{DATA_PLACE}"
    custom = config.get("custom_task")
    if isinstance(custom, dict) and isinstance(custom.get("path"), str) and Path(custom["path"]).is_file():
        source = Path(custom["path"])
        place = f"{INPUTS_PLACE}/{source.name}"
        files[place] = source.read_bytes()
        custom["path"] = f"{NODE_ROOT}/{place}"
    return config, files


def publish(workspace: Workspace, published: list[str], files: Files) -> None:
    """Write each artifact root that came back into the workspace, complete or not at all.

    A directory goes through :func:`atomic_directory`; a single file is written beside its place and renamed
    over it. An adapter about to be replaced is first kept as a version (``adapters/.versions``), as a retrain
    on this machine would.
    """
    for root in published:
        root = check_place(root)
        inside = {place: data for place, data in files.items() if place == root or place.startswith(root + "/")}
        final = workspace.root / root
        if set(inside) == {root}:  # one file
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{final.name}-", dir=final.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(inside[root])
            os.replace(tmp, final)
            continue
        if (final / PACK_CARD).is_file():  # checked on the node against its own, pack-less workspace: again here
            raise ValueError(
                f"{final.name!r} in {final.parent} comes from the pretrained pack and is read-only; "
                "train under another name (--name)"
            )
        if root.startswith("adapters/") and (final / CHECKPOINT_MARKER).is_file():
            from fusionlab.checkpoint import keep_version  # torch comes with it: only for a retrained adapter

            keep_version(final)
        with atomic_directory(final) as tmp_dir:
            for place, data in inside.items():
                target = tmp_dir / place[len(root) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
