"""A sweep as one group: queued, followed, resumed and cancelled together, while its runs stay ordinary runs.

The group is a record file, ``<workspace>/sweeps/<name>.json`` (:class:`SweepRecord`): the spec and, for every
cell (subset × method × seed), the id of the run that trains it. The run store is untouched — each run is an
ordinary queued ``train_fusion`` run — so any backend that serves the queue serves a sweep. The record's name is
claimed by creating its file exclusively, so two commands cannot take the same sweep name, and its runs are
named after it (:func:`~fusionlab.sweep.spec.run_name`).

*Resume* queues a new run for every cell whose run failed or was cancelled (and only those: a finished cell is
never trained twice, a queued or running one is left to finish), and records the new id in the cell's slot.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fusionlab.config import JsonConfig, _fail, check_name
from fusionlab.runstore import CANCELLED, FAILED, QUEUED, RUNNING, RunStore
from fusionlab.schema import stamp, upgrade
from fusionlab.sweep.spec import SweepCell, SweepSpec, cells, plan_runs
from fusionlab.workspace import Workspace

SWEEPS_DIR = "sweeps"


class SweepError(ValueError):
    """A sweep that cannot be created or found, said in the user's words."""


@dataclass
class SweepRecord(JsonConfig):
    """A sweep's spec and the run id of each of its cells (``cell key -> run id``), in queue order."""

    name: str
    spec: SweepSpec
    runs: dict[str, int] = field(default_factory=dict)
    owner: str | None = None

    _nested: ClassVar[dict[str, type[JsonConfig]]] = {"spec": SweepSpec}

    def validate(self) -> None:
        if isinstance(self.spec, dict):
            self.spec = SweepSpec.from_dict(self.spec)
        check_name(self.name, "SweepRecord.name")
        if not isinstance(self.runs, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in self.runs.items()
        ):
            _fail("SweepRecord", "runs", f"must map cell keys to run ids, got {self.runs!r}")

    def to_dict(self) -> dict[str, Any]:
        return stamp({**super().to_dict(), "spec": self.spec.to_dict()})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRecord:
        if not isinstance(data, dict):
            raise ValueError(f"SweepRecord: must be a JSON object, got {type(data).__name__}")
        return super().from_dict(upgrade(data, "a stored SweepRecord"))

    def cell_runs(self) -> list[tuple[SweepCell, int | None]]:
        """Every planned cell with its run id (``None`` for a cell not queued yet)."""
        return [(cell, self.runs.get(cell.key)) for cell in cells(self.spec)]  # no run specs built: it is polled


def sweeps_dir(workspace: Workspace) -> Path:
    return workspace.root / SWEEPS_DIR


def record_path(workspace: Workspace, name: str) -> Path:
    return sweeps_dir(workspace) / f"{check_name(name, 'sweep name')}.json"


def save_record(workspace: Workspace, record: SweepRecord) -> None:
    """Write the record atomically (a reader never sees half a file)."""
    path = record_path(workspace, record.name)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_record(workspace: Workspace, name: str) -> SweepRecord:
    path = record_path(workspace, name)
    if not path.is_file():
        known = ", ".join(list_sweeps(workspace)) or "none yet"
        raise SweepError(f"no sweep named {name!r} in {workspace.root} (sweeps: {known})")
    try:
        return SweepRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError) as err:
        raise SweepError(f"{path} cannot be read: {err}") from err


def list_sweeps(workspace: Workspace) -> list[str]:
    directory = sweeps_dir(workspace)
    return sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []


def claim_name(workspace: Workspace, base: str) -> str:
    """The first free sweep name of ``base``, ``base-2``, ``base-3``…, claimed by creating its file exclusively
    (the claim is atomic: a second command at the same instant gets the next name)."""
    sweeps_dir(workspace).mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        name = check_name(base if n == 1 else f"{base}-{n}", "sweep name")
        try:
            with open(record_path(workspace, name), "x", encoding="utf-8") as handle:
                handle.write("{}\n")  # a placeholder: the record is written once its runs are queued
            return name
        except FileExistsError:
            continue
    raise SweepError(f"every sweep name from {base!r} to {base}-999 is taken: choose another with --name")


def queue_sweep(
    workspace: Workspace, spec: SweepSpec, name: str | None = None, owner: str | None = None
) -> SweepRecord:
    """Claim a name, queue every run of ``spec`` and write the record; returns it."""
    from fusionlab.sweep.spec import default_sweep_name

    if name is not None and record_path(workspace, name).exists():
        raise SweepError(f"a sweep named {name!r} exists already: resume it, or choose another name")
    claimed = claim_name(workspace, name or default_sweep_name(spec.target))
    record = SweepRecord(name=claimed, spec=spec, owner=owner)
    store = RunStore(workspace.runs_db)
    try:
        for cell, run in plan_runs(spec, claimed):
            record.runs[cell.key] = store.enqueue(run.kind, run.name, run.to_dict(), owner=owner)
    finally:
        save_record(workspace, record)  # what was queued is recorded, even if queueing stopped half-way
    return record


def sweep_statuses(workspace: Workspace, record: SweepRecord) -> Counter[str]:
    """How many of the sweep's cells are queued, running, finished, failed, cancelled or not queued."""
    store = RunStore(workspace.runs_db)
    return Counter(store.get(run_id).status if run_id is not None else "not queued" for _, run_id in record.cell_runs())


def cancel_sweep(workspace: Workspace, record: SweepRecord) -> int:
    """Ask every queued or running run of the sweep to stop; returns how many were asked."""
    store = RunStore(workspace.runs_db)
    asked = 0
    for _, run_id in record.cell_runs():
        if run_id is not None and store.get(run_id).status in (QUEUED, RUNNING):
            store.request_cancel(run_id)
            asked += 1
    return asked


def resume_sweep(workspace: Workspace, record: SweepRecord) -> list[int]:
    """Queue a fresh run for every cell that failed, was cancelled or was never queued; returns the new ids."""
    store = RunStore(workspace.runs_db)
    planned = {cell.key: run for cell, run in plan_runs(record.spec, record.name)}
    queued = []
    for cell, run_id in record.cell_runs():
        if run_id is not None and store.get(run_id).status not in (FAILED, CANCELLED):
            continue
        run = planned[cell.key]
        record.runs[cell.key] = store.enqueue(run.kind, run.name, run.to_dict(), owner=record.owner)
        queued.append(record.runs[cell.key])
    save_record(workspace, record)
    return queued
