"""Removing artifacts from a workspace without breaking what remains.

A classroom workspace collects adapters and fusions (and, since retraining keeps the replaced adapter for the
fusions trained on it, earlier adapter versions under ``adapters/.versions/``). The teacher clears them out;
nothing here may leave a fusion that no longer loads:

- the pack's artifacts are read-only (every fusion over them, and the demo, depends on them);
- an adapter that any fusion fuses is refused, naming those fusions (delete them first);
- an artifact a queued or running run is writing is refused, naming the run (cancel it first);
- an earlier adapter version is removed only when no fusion was trained on it, and never while a run is going
  (a fusion in training may have loaded the version a retrain has just replaced, and pins it when it saves).

A removal first renames the directory to a ``.tmp-<pid>-`` name (listings skip those at once; if this process
dies midway, :meth:`fusionlab.workspace.Workspace.remove_abandoned` finishes the job) and then deletes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fusionlab.checkpoint import VERSIONS_DIR, CheckpointError, read_meta
from fusionlab.pack.store import is_pack_artifact
from fusionlab.runspec import AdapterRun, FusionRun, kind_saving
from fusionlab.runstore import QUEUED, RUNNING, RunStore
from fusionlab.workspace import TMP_PREFIX, Workspace

ADAPTER = AdapterRun.artifact
FUSION = FusionRun.artifact


class RemovalRefused(ValueError):
    """Removing this would break something that remains; the message says what and how to proceed."""


@dataclass(frozen=True)
class Removal:
    """What was (or would be) removed: an adapter, a fusion or an earlier adapter version, and its size."""

    kind: str
    name: str
    path: Path
    size_bytes: int

    @property
    def description(self) -> str:
        return f"{self.kind} {self.name} ({self.size_bytes / 1e6:.1f} MB)"


def fusions_using(workspace: Workspace, adapter: str) -> list[str]:
    """The fusions in the workspace that fuse ``adapter`` (any version of it)."""
    return [name for name, adapters in _fusion_adapters(workspace).items() if adapter in adapters]


def delete_artifact(workspace: Workspace, kind: str, name: str) -> Removal:
    """Delete adapter or fusion ``name``, or raise :class:`RemovalRefused` saying why it must stay.

    Deleting an adapter also deletes its earlier versions (no fusion uses any of them, or it would be refused).
    """
    if kind not in (ADAPTER, FUSION):
        raise ValueError(f"kind must be {ADAPTER!r} or {FUSION!r}, got {kind!r}")
    directory = workspace.adapter_dir(name) if kind == ADAPTER else workspace.fusion_dir(name)
    if not directory.is_dir():
        raise RemovalRefused(f"there is no {kind} called {name!r} in {workspace.root}")
    if is_pack_artifact(directory):
        raise RemovalRefused(f"{kind} {name!r} comes from the pretrained pack, which is read-only")
    if kind == ADAPTER and (users := fusions_using(workspace, name)):
        raise RemovalRefused(f"adapter {name!r} is fused by {', '.join(users)}: delete those fusions first")
    store = RunStore(workspace.runs_db)
    for run in store.list_runs(status=(QUEUED, RUNNING), kind=kind_saving(kind)):
        if run.name == name:
            raise RemovalRefused(f"run #{run.id} ({run.status}) writes {kind} {name!r}: cancel it first")
    removal = Removal(kind, name, directory, _size(directory))
    _remove(directory)
    if kind == ADAPTER:
        versions = workspace.adapters_dir / VERSIONS_DIR / name
        if versions.is_dir():
            _remove(versions)
    return removal


def unused_versions(workspace: Workspace) -> list[Removal]:
    """The earlier adapter versions no fusion in the workspace was trained on (safe to remove when idle)."""
    pinned = {
        (adapter, content_hash[:16])
        for adapters in _fusion_adapters(workspace).values()
        for adapter, content_hash in adapters.items()
    }
    root = workspace.adapters_dir / VERSIONS_DIR
    found = []
    for adapter_dir in sorted(root.iterdir()) if root.is_dir() else []:
        for version in sorted(adapter_dir.iterdir()) if adapter_dir.is_dir() else []:
            kept = version.is_dir() and not version.name.startswith(TMP_PREFIX)
            if kept and (adapter_dir.name, version.name) not in pinned:
                name = f"{adapter_dir.name}@{version.name}"
                found.append(Removal("adapter version", name, version, _size(version)))
    return found


def prune_versions(workspace: Workspace) -> list[Removal]:
    """Remove the earlier adapter versions no fusion uses; refused while any run is going (see the module)."""
    going = RunStore(workspace.runs_db).list_runs(status=RUNNING)
    if going:
        raise RemovalRefused(f"run #{going[0].id} is running: prune earlier adapter versions when no run is going")
    removed = unused_versions(workspace)
    for removal in removed:
        _remove(removal.path)
    return removed


def _fusion_adapters(workspace: Workspace) -> dict[str, dict[str, str]]:
    """Every fusion's adapters and the content hash it was trained on (unreadable fusions pin nothing known)."""
    found = {}
    for name in workspace.list_fusions():
        try:
            meta = read_meta(workspace.fusion_dir(name))
        except CheckpointError:
            continue
        found[name] = {entry["name"]: entry["content_hash"] for entry in meta.get("adapters", [])}
    return found


def _size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def _remove(directory: Path) -> None:
    aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-deleted-", dir=directory.parent))
    os.replace(directory, aside / directory.name)
    shutil.rmtree(aside, ignore_errors=True)
