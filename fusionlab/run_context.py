"""The seam between the worker and what it runs: the context an executor reports through, and the exception
that ends a run as cancelled rather than failed.

Kept apart from :mod:`fusionlab.worker` (which spawns, locks and polls) so that executors — the training jobs,
a test's fake executor — depend on this small module only, and the worker on them only by name.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any, Protocol

from fusionlab.workspace import Workspace

CANCEL_CHECK_INTERVAL_S = 0.5

log = logging.getLogger(__name__)


class RunReports(Protocol):
    """Where a run's reports go: the run store itself (:class:`fusionlab.runstore.RunStore`) for a local worker,
    or, on a Ray cluster's node, a channel back to the dispatcher that writes them into the store
    (:mod:`fusionlab.ray_backend.remote`). Executors see neither: they only call their :class:`RunContext`."""

    def log_metrics(self, run_id: int, step: int, values: dict[str, float]) -> None: ...

    def add_snapshot(self, run_id: int, step: int, payload: dict[str, Any]) -> None: ...

    def set_progress(self, run_id: int, progress: float, message: str | None = None) -> None: ...

    def is_cancel_requested(self, run_id: int) -> bool: ...


class RunCancelled(Exception):
    """Raised by an executor once ``ctx.cancelled()`` is true, so that the run ends cancelled, not failed."""


class RunContext:
    """What an executor may do besides computing: report progress, metrics and snapshots, and see a cancel.

    All reporting goes to ``store``: the run store, where the dashboard polls it, or a channel that ends there.
    """

    def __init__(self, workspace: Workspace, store: RunReports, run_id: int, device: str) -> None:
        self.workspace = workspace
        self.store = store
        self.run_id = run_id
        self.device = device
        self._cancelled = False
        self._checked_at = float("-inf")

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        self.store.log_metrics(self.run_id, step, values)

    def add_snapshot(self, step: int, payload: dict[str, Any]) -> None:
        self.store.add_snapshot(self.run_id, step, payload)

    def set_progress(self, progress: float, message: str | None = None) -> None:
        self.store.set_progress(self.run_id, progress, message)

    def cancelled(self) -> bool:
        """Whether a cancel was requested. Cheap enough to call every step: the store is read at most every
        half second, and a busy database is treated as "not yet" rather than breaking the run."""
        now = time.monotonic()
        if not self._cancelled and now - self._checked_at >= CANCEL_CHECK_INTERVAL_S:
            self._checked_at = now
            try:
                self._cancelled = self.store.is_cancel_requested(self.run_id)
            except (sqlite3.Error, ConnectionError) as err:
                log.warning("run %d: could not read the cancel flag (%s); will retry", self.run_id, err)
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise :class:`RunCancelled` if a cancel was requested: a one-line check for an executor's loop."""
        if self.cancelled():
            raise RunCancelled(f"run {self.run_id} was cancelled")
