"""The on-disk workspace shared by the CLI, the dashboard and the background worker.

Everything a user produces lives under one root so that separate processes (a Streamlit server, a worker it
spawned, a CLI run) agree on where adapters, fusions, the run database and logs are without passing paths
around. Checkpoints are written through :func:`atomic_directory`, so a directory under its final name is
always complete: a reader listing adapters never picks up one that a killed or crashing process left
half-written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fusionlab.processes import pid_alive

HOME_ENV = "FUSIONLAB_HOME"
"""Environment variable naming the workspace root when none is passed explicitly."""

DEFAULT_ROOT = "fusionlab-workspace"
CHECKPOINT_MARKER = "fusionlab.json"
"""The file every complete adapter or fusion checkpoint holds; only directories holding it are listed."""

TMP_PREFIX = ".tmp-"
"""Prefix of directories still being written (or abandoned by a killed writer); listings skip them. The
writer's pid follows it (``.tmp-<pid>-<name>-<random>``), so :meth:`Workspace.remove_abandoned` can tell a
directory being written from one whose writer died."""
LEGACY_TMP_AGE_S = 24 * 3600
"""A temporary directory without a pid (written by an older fusionlab) counts as abandoned after a day."""

VERSIONS_DIR = ".versions"
"""Where earlier versions of a checkpoint are kept: ``adapters/.versions/<name>/<hash>/`` and
``fusions/.versions/<name>/<hash>/``. Retraining publishes a new version under the name; every fusion keeps loading
the exact adapter version it was trained with, found here by the content hash it recorded, and a fusion retrained
under its name leaves the one it replaces here, loadable (its results and its owner's work are not lost). Listings
skip the directory: its name starts with a dot and holds no checkpoint marker of its own."""


class Workspace:
    """Paths of one workspace: ``adapters/``, ``fusions/``, ``logs/`` and ``runs.sqlite`` under a root.

    The root is the ``root`` argument, else ``$FUSIONLAB_HOME``, else ``./fusionlab-workspace``. It is made
    absolute at construction so that a worker spawned with a different working directory sees the same place.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        chosen = root if root is not None else os.environ.get(HOME_ENV) or DEFAULT_ROOT
        self.root = Path(chosen).expanduser().absolute()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def adapters_dir(self) -> Path:
        return self.root / "adapters"

    @property
    def fusions_dir(self) -> Path:
        return self.root / "fusions"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def runs_db(self) -> Path:
        return self.root / "runs.sqlite"

    def ensure(self) -> Workspace:
        """Create the root and its sub-directories (idempotent); returns ``self`` for chaining."""
        for directory in (self.root, self.adapters_dir, self.fusions_dir, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return self

    def adapter_dir(self, name: str) -> Path:
        """Where the adapter checkpoint called ``name`` lives (whether or not it exists yet)."""
        return self.adapters_dir / _checked_name(name)

    def fusion_dir(self, name: str) -> Path:
        """Where the fusion checkpoint called ``name`` lives (whether or not it exists yet)."""
        return self.fusions_dir / _checked_name(name)

    def list_adapters(self) -> list[str]:
        """Names of the complete adapter checkpoints, sorted."""
        return _complete_checkpoints(self.adapters_dir)

    def list_fusions(self) -> list[str]:
        """Names of the complete fusion checkpoints, sorted."""
        return _complete_checkpoints(self.fusions_dir)

    def remove_abandoned(self) -> list[Path]:
        """Delete the temporary directories whose writer died (a run killed while saving); returns them.

        A directory still being written by a live process is left alone, whoever wrote it.
        """
        removed = []
        for directory in self._writable_dirs():
            for entry in directory.iterdir():
                if entry.name.startswith(TMP_PREFIX) and entry.is_dir() and _abandoned(entry):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
        return removed

    def _writable_dirs(self) -> Iterator[Path]:
        """Every directory a checkpoint is published into: the adapters' and fusions', and each name's kept
        versions (``.versions/<name>/``, where replaced checkpoints are copied the same way)."""
        for directory in (self.adapters_dir, self.fusions_dir):
            if not directory.is_dir():
                continue
            yield directory
            versions = directory / VERSIONS_DIR
            if versions.is_dir():
                yield versions  # where a deletion renames a name's versions aside first
                yield from (d for d in versions.iterdir() if d.is_dir() and not d.name.startswith(TMP_PREFIX))


def _abandoned(entry: Path) -> bool:
    owner = entry.name[len(TMP_PREFIX) :].split("-", 1)[0]
    if owner.isdigit():
        return not pid_alive(int(owner))
    try:
        return time.time() - entry.stat().st_mtime > LEGACY_TMP_AGE_S
    except OSError:
        return False


def _checked_name(name: str) -> str:
    """Reject names that would escape the directory or collide with temporary/hidden entries.

    Names usually come from a text box in the dashboard, so ``../x`` or ``a/b`` must not turn into a path.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"checkpoint name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ValueError(f"checkpoint name {name!r} must not contain path separators or start with '.'")
    return name


def _complete_checkpoints(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if not entry.name.startswith(TMP_PREFIX) and (entry / CHECKPOINT_MARKER).is_file()
    )


@contextmanager
def atomic_directory(final_path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a directory under a temporary name and publish it at ``final_path`` only once complete.

    Yields ``<parent>/.tmp-<pid>-<name>-<random>``. On a clean exit the directory is renamed into place; an existing
    directory at ``final_path`` is first renamed aside and deleted afterwards, so a reader sees either the old
    complete directory, the new complete one, or (for an instant) none — never a partial one. On an exception
    the temporary directory is deleted. If the process is killed, the ``.tmp-`` directory is left behind and
    listings ignore it.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-{final.name}-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, final)


def _publish(tmp: Path, final: Path) -> None:
    aside: Path | None = None
    if final.exists():
        aside = final.parent / f"{TMP_PREFIX}{os.getpid()}-{final.name}-old-{uuid.uuid4().hex[:8]}"
        os.rename(final, aside)
    try:
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None and not final.exists():
            os.rename(aside, final)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
