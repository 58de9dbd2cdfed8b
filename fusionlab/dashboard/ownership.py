"""Whose an adapter or fusion name is on a shared server, and which name a visitor's run gets by default.

On a classroom server thirty students queue runs into one workspace. A run saves its checkpoint under its name,
so a student who picks the adapters a classmate picked would replace the classmate's fusion when the run ends.
Two rules prevent that: a student's default names carry the student's name (``cb-attention-merry-otter-42``),
and a name that another visitor's run holds (queued, running, or the run that made the checkpoint on disk) is
refused with the reason. Checkpoints made outside the dashboard (the teacher's command line, the demo) count as
the teacher's. The teacher, and the one user of a single-user server, may replace anything but the pack's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fusionlab.config import MAX_NAME_LENGTH, check_name
from fusionlab.runspec import TRAIN_ADAPTER, RunKind, spec_class
from fusionlab.runstore import FINISHED, QUEUED, RUNNING, RunStore
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

TEACHER = "the teacher's workspace"
"""Who holds a checkpoint that no dashboard run made (the command line, the demo, an import)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a name: the owner id their runs record (``None``: nobody known) and how to call them."""

    owner: str | None
    label: str


class NameTaken(ValueError):
    """A visitor's run would replace (or race) an artifact that another visitor's run holds."""

    def __init__(self, name: str, artifact: str, holder: Holder, suggestion: str | None) -> None:
        self.name, self.holder = name, holder
        alternative = f" (yours by default: {suggestion})" if suggestion and suggestion != name else ""
        super().__init__(
            f"the {artifact} name {name} belongs to {holder.label}: your run would replace their {artifact}. "
            f"Leave the name empty for your own{alternative}, or choose another name"
        )


def personal_name(base: str, visitor_name: str | None) -> str:
    """``<base>-<visitor>``, the default name of a student's run on a classroom server: the visitor's name made
    safe as a directory name (lower case; other characters become ``-``), cut to the name length limit."""
    slug = re.sub(r"[^a-z0-9._+-]+", "-", (visitor_name or "").lower()).strip("-.") or "visitor"
    return check_name(f"{base}-{slug}"[:MAX_NAME_LENGTH].rstrip("-."), "name")


def others_holding(store: RunStore, workspace: Workspace, kind: RunKind, name: str, owner: str | None) -> Holder | None:
    """Who other than ``owner`` holds ``name`` for runs of ``kind``: a queued or running run of someone else, else
    the owner of the finished run that made the checkpoint on disk (the teacher when no dashboard run made it);
    ``None`` when the name is free or ``owner``'s own. One read of the run store."""
    runs = [run for run in store.list_runs(kind=kind) if run.name == name]  # newest first
    pending = [run for run in runs if run.status in (QUEUED, RUNNING) and run.owner != owner]
    if pending:
        return Holder(pending[0].owner, pending[0].owner_name or "another visitor")
    directory = workspace.adapter_dir(name) if kind == TRAIN_ADAPTER else workspace.fusion_dir(name)
    if not (directory / CHECKPOINT_MARKER).is_file():
        return None
    finished = next((run for run in runs if run.status == FINISHED), None)
    if finished is None or finished.owner is None:
        return Holder(None, TEACHER)
    return None if finished.owner == owner else Holder(finished.owner, finished.owner_name or "another visitor")


def check_free(
    store: RunStore, workspace: Workspace, kind: RunKind, name: str, owner: str | None, suggestion: str | None = None
) -> None:
    """Refuse (:class:`NameTaken`) a run of ``owner`` that would save over another visitor's ``name``."""
    found = others_holding(store, workspace, kind, name, owner)
    if found is not None:
        raise NameTaken(name, spec_class(kind).artifact, found, suggestion)
