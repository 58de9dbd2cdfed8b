"""Removing artifacts from a workspace without breaking what remains.

A classroom workspace collects adapters and fusions, and their earlier versions: retraining under a name keeps
the version it replaces (:func:`fusionlab.checkpoint.keep_version`), under ``adapters/.versions/`` (for the
fusions trained on it) and ``fusions/.versions/``. The teacher clears them out; nothing here may leave a fusion
that no longer loads:

- the pack's artifacts are read-only (every fusion over them, and the demo, depends on them);
- an adapter that any fusion fuses is refused, naming those fusions (delete them first);
- an artifact a queued or running run is writing is refused, naming the run (cancel it first);
- an earlier adapter version is removed only when no fusion was trained on it, and never while a run is going
  (a fusion in training may have loaded the version a retrain has just replaced, and pins it when it saves);
  an earlier fusion version is needed by nothing and is removed by the same pruning.

A removal first renames the directory to a ``.tmp-<pid>-`` name (listings skip those at once; if this process
dies midway, :meth:`fusionlab.workspace.Workspace.remove_abandoned` finishes the job) and then deletes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fusionlab.checkpoint import CheckpointError, read_meta
from fusionlab.pack.store import is_pack_artifact
from fusionlab.runspec import AdapterRun, FusionRun, kind_saving
from fusionlab.runstore import QUEUED, RUNNING, RunStore
from fusionlab.workspace import TMP_PREFIX, VERSIONS_DIR, Workspace

ADAPTER = AdapterRun.artifact
FUSION = FusionRun.artifact


class RemovalRefused(ValueError):
    """Removing this would break something that remains; the message says what and how to proceed."""


@dataclass(frozen=True)
class Removal:
    """What was (or would be) removed: an adapter, a fusion or an earlier version of one, and its size."""

    kind: str
    name: str
    path: Path
    size_bytes: int

    @property
    def description(self) -> str:
        return f"{self.kind} {self.name} ({self.size_bytes / 1e6:.1f} MB)"


def fusions_using(workspace: Workspace, adapter: str) -> list[str]:
    """The fusions in the workspace that fuse ``adapter`` (any version of it), their kept earlier versions
    included (``f1@<hash>``: they load only while the adapter does)."""
    return [name for name, adapters in _fusion_adapters(workspace, versions=True).items() if adapter in adapters]


def delete_artifact(workspace: Workspace, kind: str, name: str) -> Removal:
    """Delete adapter or fusion ``name``, or raise :class:`RemovalRefused` saying why it must stay.

    Deleting an artifact also deletes its earlier versions (no fusion uses an adapter's, or it would be refused).
    """
    if kind not in (ADAPTER, FUSION):
        raise ValueError(f"kind must be {ADAPTER!r} or {FUSION!r}, got {kind!r}")
    directory = workspace.adapter_dir(name) if kind == ADAPTER else workspace.fusion_dir(name)
    if not directory.is_dir():
        raise RemovalRefused(f"there is no {kind} called {name!r} in {workspace.root}")
    if is_pack_artifact(directory):
        raise RemovalRefused(f"{kind} {name!r} comes from the pretrained pack, which is read-only")
    if kind == ADAPTER and (users := fusions_using(workspace, name)):
        earlier = " (an earlier version goes with `fusionlab delete versions`)" if any("@" in u for u in users) else ""
        raise RemovalRefused(f"adapter {name!r} is fused by {', '.join(users)}: delete those fusions first{earlier}")
    store = RunStore(workspace.runs_db)
    for run in store.list_runs(status=(QUEUED, RUNNING), kind=kind_saving(kind)):
        if run.name == name:
            raise RemovalRefused(f"run #{run.id} ({run.status}) writes {kind} {name!r}: cancel it first")
    removal = Removal(kind, name, directory, _size(directory))
    _remove(directory)
    versions = directory.parent / VERSIONS_DIR / name
    if versions.is_dir():
        _remove(versions)
    return removal


def unused_versions(workspace: Workspace) -> list[Removal]:
    """The earlier versions nothing loads (safe to remove when idle): the adapter versions no fusion in the
    workspace was trained on, then every fusion version (no other artifact is built on a fusion; the adapter
    versions only a kept fusion version pins go with it)."""
    pinned = {
        (ADAPTER, adapter, content_hash[:16])
        for adapters in _fusion_adapters(workspace).values()
        for adapter, content_hash in adapters.items()
    }
    return [
        Removal(f"{kind} version", f"{name}@{version.name}", version, _size(version))
        for kind, directory in ((ADAPTER, workspace.adapters_dir), (FUSION, workspace.fusions_dir))
        for name, version in _kept_versions(directory)
        if (kind, name, version.name) not in pinned
    ]


def prune_versions(workspace: Workspace) -> list[Removal]:
    """Remove the earlier versions nothing uses; refused while any run is going (see the module)."""
    going = RunStore(workspace.runs_db).list_runs(status=RUNNING)
    if going:
        raise RemovalRefused(f"run #{going[0].id} is running: prune earlier versions when no run is going")
    removed = unused_versions(workspace)
    for removal in removed:
        _remove(removal.path)
    return removed


def _kept_versions(directory: Path) -> list[tuple[str, Path]]:
    """``(name, version directory)`` of every earlier version kept under ``directory/.versions/``."""
    root = directory / VERSIONS_DIR
    return [
        (named.name, version)
        for named in (sorted(root.iterdir()) if root.is_dir() else [])
        if not named.name.startswith(TMP_PREFIX)  # a deletion in progress (or killed) renamed it aside
        for version in (sorted(named.iterdir()) if named.is_dir() else [])
        if version.is_dir() and not version.name.startswith(TMP_PREFIX)
    ]


def _fusion_adapters(workspace: Workspace, versions: bool = False) -> dict[str, dict[str, str]]:
    """Every fusion's adapters and the content hash it was trained on (unreadable fusions pin nothing known);
    with ``versions``, the kept earlier fusion versions' too, as ``<name>@<version>``."""
    checkpoints = {name: workspace.fusion_dir(name) for name in workspace.list_fusions()}
    if versions:
        checkpoints |= {f"{name}@{kept.name}": kept for name, kept in _kept_versions(workspace.fusions_dir)}
    found = {}
    for name, directory in checkpoints.items():
        try:
            meta = read_meta(directory)
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
