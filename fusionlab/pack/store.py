"""Where the pack lives, its manifest, and installing it into a workspace.

The pack is laid out like a workspace (``adapters/<name>/``, ``fusions/<name>/``, each a normal checkpoint plus
its ``card.json``) under ``fusionlab/pack_data/``, with a ``pack.json`` manifest holding the SHA-256 of every
file. :func:`install_pack` copies what a workspace lacks into it after checking those hashes, so a fresh
workspace opens on trained adapters and fusions, offline, in well under a second. Installed artifacts keep
their card, which is what marks them as the pack's and read-only (:func:`is_pack_artifact`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fusionlab.checkpoint import file_sha256
from fusionlab.config import JsonConfig
from fusionlab.pack.card import CARD_FILE, ArtifactCard
from fusionlab.reported import Reported
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace, atomic_directory

PACK_DIR = Path(__file__).resolve().parent.parent / "pack_data"
MANIFEST_FILE = "pack.json"
PACK_ENV = "FUSIONLAB_PACK"
"""Set to ``off`` to start workspaces empty (as before the pack), or to a directory holding another pack."""


class PackError(ValueError):
    """The pack is missing a file, or a file does not have the content its manifest records."""


@dataclass
class PackEntry(JsonConfig):
    """One artifact of the pack: its kind, name, and the SHA-256 of each of its files."""

    kind: str
    name: str
    files: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        self._choice("kind", ("adapter", "fusion"))

    @property
    def relative_dir(self) -> str:
        return f"{self.kind}s/{self.name}"


@dataclass
class PackManifest(JsonConfig):
    """``pack.json``: every artifact in build order (adapters before the fusions over them)."""

    entries: list[PackEntry] = field(default_factory=list)
    model_name_or_path: str = "sentence-transformers/all-MiniLM-L6-v2"

    def validate(self) -> None:
        self.entries = [PackEntry.from_dict(e) if isinstance(e, dict) else e for e in self.entries]

    def to_dict(self) -> dict:
        return {"entries": [e.to_dict() for e in self.entries], "model_name_or_path": self.model_name_or_path}

    def entry(self, kind: str, name: str) -> PackEntry | None:
        return next((e for e in self.entries if e.kind == kind and e.name == name), None)

    def weights_digest(self) -> str:
        """One SHA-256 (16 hex digits) over every artifact's files except its card, so that a measurement made on
        the pack can say which weights it used. Cards are left out: they are re-scored and annotated (intervals,
        predictions) without changing what an artifact computes."""
        digest = hashlib.sha256()
        for e in self.entries:  # in build order, which the manifest fixes
            for file_name, sha in sorted(e.files.items()):
                if file_name != CARD_FILE:
                    digest.update(f"{e.kind}/{e.name}/{file_name}:{sha}\n".encode())
        return digest.hexdigest()[:16]


def pack_dir() -> Path | None:
    """The pack in use: ``$FUSIONLAB_PACK`` (a directory, or ``off`` for none), else the bundled one."""
    chosen = os.environ.get(PACK_ENV, "").strip()
    if chosen.lower() in ("off", "none", "0"):
        return None
    root = Path(chosen).expanduser() if chosen else PACK_DIR
    return root if (root / MANIFEST_FILE).is_file() else None


def read_manifest(root: Path) -> PackManifest:
    try:
        return PackManifest.from_json((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise PackError(f"{root / MANIFEST_FILE}: not a readable pack manifest ({err})") from err


def entry_for(root: Path, kind: str, name: str) -> PackEntry:
    """A manifest entry for the artifact built at ``root/<kind>s/<name>``, hashing its files."""
    directory = root / f"{kind}s" / name
    files = {p.name: file_sha256(p) for p in sorted(directory.iterdir()) if p.is_file()}
    return PackEntry(kind, name, files)


def verify_entry(root: Path, entry: PackEntry, directory: Path | None = None) -> None:
    """Raise :class:`PackError` unless every file of ``entry`` is present with its recorded hash."""
    directory = directory or root / entry.relative_dir
    for file_name, expected in entry.files.items():
        path = directory / file_name
        if not path.is_file():
            raise PackError(f"pack artifact {entry.relative_dir}: {file_name} is missing")
        found = file_sha256(path)
        if found != expected:
            raise PackError(
                f"pack artifact {entry.relative_dir}: {file_name} has SHA-256 {found[:12]}…, "
                f"the manifest records {expected[:12]}… (the file was changed or damaged)"
            )


def verify_installed_weights(workspace: Workspace, adapters: list[str], root: Path | None = None) -> None:
    """Raise :class:`PackError` unless the workspace's copy of each pack adapter among ``adapters`` has the pack's
    weights (cards aside): a measurement that records the pack's digest must have fused those very weights, and
    :func:`install_pack` leaves a copy the workspace already has as it is."""
    root = root or pack_dir()
    if root is None:
        return
    manifest = read_manifest(root)
    for name in adapters:
        entry = manifest.entry("adapter", name)
        if entry is not None:
            weights = {f: sha for f, sha in entry.files.items() if f != CARD_FILE}
            verify_entry(root, PackEntry(entry.kind, name, weights), workspace.adapter_dir(name))


def is_pack_artifact(directory: str | os.PathLike) -> bool:
    """Whether a checkpoint directory came from the pack (it carries the pack's card): read-only."""
    return (Path(directory) / CARD_FILE).is_file()


def own_name(workspace: Workspace, name: str, kind: str = "adapter") -> str:
    """``name`` unless the pack's artifact holds it (read-only), else the first free ``name-2``, ``name-3``, ...

    A user who trains "rte" in a workspace that has the pack's rte gets their own "rte-2" beside it, and every
    fusion trained on the pack's rte keeps loading.
    """
    directory = workspace.adapters_dir if kind == "adapter" else workspace.fusions_dir
    if not is_pack_artifact(directory / name):
        return name
    suffix = 2
    while is_pack_artifact(directory / f"{name}-{suffix}"):
        suffix += 1
    return f"{name}-{suffix}"


def read_card(directory: str | os.PathLike) -> ArtifactCard | None:
    path = Path(directory) / CARD_FILE
    if not path.is_file():
        return None
    return ArtifactCard.load(path)


def reported_of(directory: str | os.PathLike, extra: dict) -> Reported:
    """What a checkpoint reports about itself: a pack artifact's card (a fresh evaluation of its saved weights),
    else its own ``extra`` block. An unreadable card reads as the checkpoint's own block."""
    try:
        card = read_card(directory)
    except (OSError, ValueError):
        card = None
    return Reported.from_card(card) if card is not None else Reported.from_extra(extra)


def install_pack(workspace: Workspace, root: Path | None = None) -> list[str]:
    """Copy the pack's artifacts that ``workspace`` does not have yet; returns what was installed.

    A name the workspace already uses is left alone (a user's own artifact is never replaced), except that a
    copy of the pack's artifact gets the pack's card where its weights are the pack's (:func:`_refresh_card`).
    Every file is checked against the manifest before it is published (through :func:`atomic_directory`, so a
    reader never sees half an artifact).
    """
    root = root if root is not None else pack_dir()
    if root is None:
        return []
    manifest = read_manifest(root)
    installed = []
    for entry in manifest.entries:
        target = workspace.root / entry.relative_dir
        if (target / CHECKPOINT_MARKER).is_file():
            if is_pack_artifact(target):
                _refresh_card(root, entry, target)
            continue
        verify_entry(root, entry)
        with atomic_directory(target) as tmp:
            for file_name in entry.files:
                shutil.copyfile(root / entry.relative_dir / file_name, tmp / file_name)
            verify_entry(root, entry, tmp)
        installed.append(entry.relative_dir)
    return installed


_CARDS_KEPT: set[tuple[str, int, int, str]] = set()
"""Copies' cards already judged to stay as they are, by path, modification time, size and the pack's hash:
``ready_workspace`` runs on every page rerun, and a workspace holding an older pack would otherwise have its
weights hashed again each time."""


def _refresh_card(root: Path, entry: PackEntry, target: Path) -> None:
    """Give a workspace's copy of a pack artifact the pack's card when the card alone changed (re-scored,
    annotated, corrected) and the copy's weights are exactly the pack's; a copy with other weights (an older
    pack's) keeps the card that describes them. A nicety: a workspace it cannot write is left as it is."""
    expected = entry.files.get(CARD_FILE)
    card = target / CARD_FILE
    try:
        stat = card.stat()
        key = (str(card), stat.st_mtime_ns, stat.st_size, expected or "")
        if expected is None or key in _CARDS_KEPT or file_sha256(card) == expected:
            _CARDS_KEPT.add(key)
            return
        weights = {name: sha for name, sha in entry.files.items() if name != CARD_FILE}
        try:
            verify_entry(root, PackEntry(entry.kind, entry.name, weights), target)
            verify_entry(root, PackEntry(entry.kind, entry.name, {CARD_FILE: expected}))
        except PackError:
            _CARDS_KEPT.add(key)
            return
        handle, fresh = tempfile.mkstemp(dir=target, prefix=f".{CARD_FILE}.")
        os.close(handle)
        try:
            shutil.copyfile(root / entry.relative_dir / CARD_FILE, fresh)
            os.replace(fresh, card)  # a reader sees the old card or the new one, never half of one
        finally:
            Path(fresh).unlink(missing_ok=True)
    except OSError:
        return


def ready_workspace(root: str | os.PathLike | None = None) -> Workspace:
    """The workspace at ``root`` (see :class:`Workspace`), created if needed, with the pack installed in it and
    the half-written directories of dead writers removed."""
    workspace = Workspace(root).ensure()
    workspace.remove_abandoned()
    install_pack(workspace)
    return workspace


def pack_cards(root: str | os.PathLike) -> list[ArtifactCard]:
    """The card of every artifact of the pack at ``root``, in manifest order (artifacts without one left out)."""
    cards = (read_card(Path(root) / entry.relative_dir) for entry in read_manifest(Path(root)).entries)
    return [card for card in cards if card is not None]


def pack_summary(root: Path) -> list[dict]:
    """One row per artifact for ``fusionlab pack list``: name, kind, task, dev metric, examples, steps."""
    rows = []
    for card in pack_cards(root):
        reported = Reported.from_card(card)
        rows.append(
            {
                "kind": card.kind,
                "name": card.name,
                "task": card.task,
                "metric": card.dev.main_metric,
                "score": card.dev.main,
                "score_text": card.dev.text(),
                "learned": reported.learned(),
                "dev_examples": card.dev.examples,
                "steps": card.steps,
                "best_step": card.best_step,
                "adapters": card.adapters,
                "difference": reported.difference_text() if card.kind == "fusion" else None,
                "selection": reported.selection_text(),
            }
        )
    return rows


def dump(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
