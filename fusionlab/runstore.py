"""The run store: one SQLite file that is both the run queue and the record of every run.

The dashboard enqueues runs and reads their progress, a worker process claims and executes them, and several
of each may exist at once (Streamlit serves every session from its own thread, and a user may open two
dashboards). So the store opens a fresh connection for every operation — no connection is ever shared between
threads or processes — runs in WAL mode (readers never block the writer), waits up to ten seconds for a busy
database instead of failing, and takes the write lock up front (``BEGIN IMMEDIATE``) for read-modify-write
steps such as claiming the next run, so two workers can never claim the same one.

Timestamps are unix seconds (``REAL``), which sort, subtract and convert (``pandas.to_datetime(unit="s")``)
without parsing.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (QUEUED, RUNNING, FINISHED, FAILED, CANCELLED)
TERMINAL_STATUSES = (FINISHED, FAILED, CANCELLED)

BUSY_TIMEOUT_S = 10.0
METRIC_COLUMNS = ["step", "name", "value", "created_at"]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    worker_pid INTEGER,
    device TEXT,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT,
    error TEXT,
    final_metrics TEXT,
    artifacts TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    owner_name TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,  -- NULL stands for NaN: SQLite cannot store NaN, and a diverged loss is worth showing
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, step);
CREATE TABLE IF NOT EXISTS snapshots (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_run ON snapshots (run_id, step);
"""


def _execute_all(conn: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` in the open transaction (``executescript`` would commit it first)."""
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _add_missing_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: lambda conn: _execute_all(conn, _SCHEMA),  # the tables
    2: lambda conn: _add_missing_columns(conn, "runs", {"owner": "TEXT", "owner_name": "TEXT"}),  # who queued it
    3: lambda conn: _add_missing_columns(  # where it ran: a cluster's node, how many tries, which backend
        conn, "runs", {"node": "TEXT", "attempts": "INTEGER NOT NULL DEFAULT 0", "backend": "TEXT"}
    ),
}
"""``version -> migration`` to that version from the one before. A new column is one more entry here."""
STORE_VERSION = max(MIGRATIONS)


class NewerStoreError(RuntimeError):
    """The run store was written by a newer fusionlab than this one."""


class QuotaExceeded(ValueError):
    """A visitor already has as many runs queued or running as the server allows each visitor."""

    def __init__(self, pending: int, limit: int) -> None:
        self.pending, self.limit = pending, limit
        super().__init__(
            f"you already have {pending} run{'s' if pending != 1 else ''} queued or running, the most this server "
            f"allows each visitor ({limit}); wait for one to end, or cancel one, before queueing more"
        )


class RunNotFoundError(KeyError):
    """Raised for a run id the store does not hold; a ``KeyError`` whose message reads plainly."""

    def __init__(self, run_id: int) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"no run with id {self.run_id}"


@dataclass(frozen=True)
class Run:
    """One row of the ``runs`` table, with its JSON columns parsed."""

    id: int
    kind: str
    name: str
    config: dict[str, Any]
    status: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    worker_pid: int | None
    device: str | None
    progress: float
    message: str | None
    error: str | None
    final_metrics: dict[str, Any] | None
    artifacts: dict[str, Any] | None
    cancel_requested: bool
    owner: str | None = None
    """Who queued the run: a visitor's id on a classroom server (see :mod:`fusionlab.dashboard.visitors`), or
    None (the command line, the worker's own runs, a single-user dashboard)."""
    owner_name: str | None = None
    """The name that visitor showed when queueing (for display; permissions go by ``owner``)."""
    node: str | None = None
    """The Ray node id the run last ran on (``None`` for a run executed by a local worker)."""
    attempts: int = 0
    """How many times a worker or dispatcher claimed the run: 1 for a run that ran once, 2 after a retry."""
    backend: str | None = None
    """Who executes it: ``None``/``"local"`` (a local worker) or ``"ray"`` (a dispatcher, see
    :mod:`fusionlab.ray_backend`)."""

    @property
    def is_terminal(self) -> bool:
        """Whether the run has ended (finished, failed or cancelled) and will not change any more."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Run:
        return cls(
            id=row["id"],
            kind=row["kind"],
            name=row["name"],
            config=json.loads(row["config"]),
            status=row["status"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            worker_pid=row["worker_pid"],
            device=row["device"],
            progress=row["progress"],
            message=row["message"],
            error=row["error"],
            final_metrics=_loads(row["final_metrics"]),
            artifacts=_loads(row["artifacts"]),
            cancel_requested=bool(row["cancel_requested"]),
            owner=row["owner"],
            owner_name=row["owner_name"],
            node=row["node"],
            attempts=row["attempts"],
            backend=row["backend"],
        )


@dataclass(frozen=True)
class Snapshot:
    """A periodic record of a run's fusion weights.

    e.g. ``{"layers": [[w_adapter, ...], ...], "adapter_names": [...]}``.
    """

    step: int
    payload: dict[str, Any]
    created_at: float


def _json_default(value: Any) -> Any:
    """Let executors hand over what they naturally have: paths, numpy/torch scalars and small arrays."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be JSON serialisable: {err}") from err


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _requeue(conn: sqlite3.Connection, run_id: int, message: str) -> None:
    """Back to the queue at its old place, without the abandoned attempt's metrics and snapshots."""
    conn.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
    conn.execute("DELETE FROM snapshots WHERE run_id = ?", (run_id,))
    conn.execute(
        "UPDATE runs SET status = ?, started_at = NULL, worker_pid = NULL, progress = 0, message = ? WHERE id = ?",
        (QUEUED, message, run_id),
    )


class RunStore:
    """Queue and record of runs in the SQLite file at ``path`` (created, with its tables, when missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- connections ---------------------------------------------------------------------------------
    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A fresh connection for one operation; ``write=True`` makes it a ``BEGIN IMMEDIATE`` transaction."""
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            if not write:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _init_schema(self) -> None:
        # Switching to WAL needs an exclusive lock and, unlike ordinary statements, can report "locked"
        # without waiting on the busy handler when another process opens the file at the same moment;
        # so retry briefly.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                with self._connect() as conn:
                    conn.execute("PRAGMA journal_mode = WAL")
                    conn.execute("PRAGMA synchronous = NORMAL")
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        self._migrate(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the tables to :data:`STORE_VERSION` (``PRAGMA user_version``), one migration at a time.

        Stores written before versions were recorded read as version 0; every migration is idempotent on them
        (``IF NOT EXISTS``, columns added only when missing), since such a store may already have any of them.
        """
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > STORE_VERSION:
            raise NewerStoreError(
                f"{self.path} was written by a newer fusionlab (run store version {version}; this one reads up to "
                f"{STORE_VERSION}): upgrade fusionlab to open it"
            )
        for target in range(version + 1, STORE_VERSION + 1):
            MIGRATIONS[target](conn)
        if version != STORE_VERSION:
            conn.execute(f"PRAGMA user_version = {STORE_VERSION}")

    @staticmethod
    def _require(conn: sqlite3.Connection, run_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(run_id)
        return row

    def _transition(self, run_id: int, allowed_from: tuple[str, ...], action: str, sql: str, params: tuple) -> None:
        """Apply ``sql`` (an UPDATE whose last parameter is the run id) only from ``allowed_from`` statuses.

        A run that already ended must not be revived or overwritten, e.g. a late ``finish`` after the run was
        marked failed; that is a bug in the caller, reported with the run's actual status.
        """
        with self._connect(write=True) as conn:
            status = self._require(conn, run_id)["status"]
            if status not in allowed_from:
                raise ValueError(f"cannot {action} run {run_id}: it is {status}")
            conn.execute(sql, (*params, run_id))

    # -- queue ---------------------------------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        name: str,
        config: dict[str, Any],
        owner: str | None = None,
        owner_name: str | None = None,
        max_pending: int | None = None,
    ) -> int:
        """Add a run to the end of the queue and return its id.

        With ``owner`` and ``max_pending``, refuse (:class:`QuotaExceeded`) when that owner already has
        ``max_pending`` runs queued or running; the count and the insert are one transaction, so ten clicks at
        the same instant cannot slip past the quota together.
        """
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"run kind must be a non-empty string, got {kind!r}")
        if not isinstance(name, str):
            raise ValueError(f"run name must be a string, got {name!r}")
        if not isinstance(config, dict):
            raise TypeError(f"run config must be a dict, got {type(config).__name__}")
        config_json = _dumps(config, "run config")
        with self._connect(write=True) as conn:
            if owner is not None and max_pending is not None:
                pending = conn.execute(
                    "SELECT COUNT(*) FROM runs WHERE owner = ? AND status IN (?, ?)", (owner, QUEUED, RUNNING)
                ).fetchone()[0]
                if pending >= max_pending:
                    raise QuotaExceeded(pending, max_pending)
            cursor = conn.execute(
                "INSERT INTO runs (kind, name, config, status, created_at, owner, owner_name) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, name, config_json, QUEUED, time.time(), owner, owner_name),
            )
            return int(cursor.lastrowid)

    def pending_count(self, owner: str) -> int:
        """How many runs ``owner`` has queued or running."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE owner = ? AND status IN (?, ?)", (owner, QUEUED, RUNNING)
            ).fetchone()
        return int(row[0])

    def start(self, kind: str, name: str, config: dict[str, Any], worker_pid: int, device: str) -> Run:
        """Record a run that starts at once in the calling process (``--inline``), bypassing the queue, so
        that it is listed, followed and judged like every other run."""
        if not isinstance(kind, str) or not kind or not isinstance(name, str) or not isinstance(config, dict):
            raise ValueError(f"a run needs a kind, a name and a config dict; got {kind!r}, {name!r}, {type(config)}")
        config_json = _dumps(config, "run config")
        now = time.time()
        with self._connect(write=True) as conn:  # inserted running: no worker can claim it on the way
            cursor = conn.execute(
                "INSERT INTO runs (kind, name, config, status, created_at, started_at, worker_pid, device) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, name, config_json, RUNNING, now, now, worker_pid, device),
            )
            return Run._from_row(self._require(conn, int(cursor.lastrowid)))

    def claim_next(self, worker_pid: int, device: str, backend: str | None = None) -> Run | None:
        """Atomically move the oldest queued run to ``running`` for this worker (``None``: queue empty).

        Each claim counts one more attempt; ``backend`` records who executes it (``"ray"`` for a dispatcher).
        """
        with self._connect() as conn:  # cheap read first, so an idle worker's polling takes no write lock
            if conn.execute("SELECT 1 FROM runs WHERE status = ? LIMIT 1", (QUEUED,)).fetchone() is None:
                return None
        with self._connect(write=True) as conn:
            row = conn.execute("SELECT id FROM runs WHERE status = ? ORDER BY id LIMIT 1", (QUEUED,)).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE runs SET status = ?, started_at = ?, worker_pid = ?, device = ?, progress = 0, message = NULL, "
                "attempts = attempts + 1, backend = ? WHERE id = ?",
                (RUNNING, time.time(), worker_pid, device, backend, row["id"]),
            )
            return Run._from_row(self._require(conn, row["id"]))

    def next_queued(self) -> Run | None:
        """The run :meth:`claim_next` would claim now, left queued (``None``: queue empty)."""
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE status = ? ORDER BY id LIMIT 1", (QUEUED,)).fetchone()
            return None if row is None else Run._from_row(row)

    def set_node(self, run_id: int, node: str) -> None:
        """Record the cluster node a running run has started on (shown as ``node`` by ``runs show --json``)."""
        self._transition(run_id, (RUNNING,), "place", "UPDATE runs SET node = ? WHERE id = ?", (str(node),))

    def requeue(self, run_id: int, reason: str) -> None:
        """Put a running run back at its place in the queue (its id) to be tried again, e.g. after the cluster
        node under it died; ``reason`` becomes its message.

        The metrics and snapshots of the abandoned attempt are deleted, so the next attempt's curve is the only
        one; the attempt count is kept (the next claim adds one).
        """
        with self._connect(write=True) as conn:
            status = self._require(conn, run_id)["status"]
            if status != RUNNING:
                raise ValueError(f"cannot requeue run {run_id}: it is {status}")
            _requeue(conn, run_id, str(reason))

    def queue_position(self, run_id: int) -> int | None:
        """1-based place of a queued run in the queue (1 = runs next); ``None`` if it is not queued."""
        with self._connect() as conn:
            if self._require(conn, run_id)["status"] != QUEUED:
                return None
            (position,) = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE status = ? AND id <= ?", (QUEUED, run_id)
            ).fetchone()
            return int(position)

    # -- reading runs --------------------------------------------------------------------------------
    def get(self, run_id: int) -> Run:
        """The run with this id; raises :class:`RunNotFoundError` (a ``KeyError``) if there is none."""
        with self._connect() as conn:
            return Run._from_row(self._require(conn, run_id))

    def list_runs(
        self,
        status: str | Iterable[str] | None = None,
        kind: str | None = None,
        limit: int | None = None,
        by_end: bool = False,
    ) -> list[Run]:
        """Runs, newest first (or, with ``by_end``, the most recently ended first: a long run queued early may
        end after a short one queued later), optionally only those with the given status(es) and/or kind."""
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            unknown = sorted(set(wanted) - set(STATUSES))
            if unknown:
                raise ValueError(f"unknown run status {', '.join(unknown)}; expected one of {', '.join(STATUSES)}")
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        sql = "SELECT * FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY ended_at DESC, id DESC" if by_end else " ORDER BY id DESC"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
            sql += " LIMIT ?"
            params.append(limit)
        with self._connect() as conn:
            return [Run._from_row(row) for row in conn.execute(sql, params)]

    def active_run(self, device: str | None = None) -> Run | None:
        """The longest-running run still executing (on ``device`` if given), or ``None`` when idle."""
        sql = "SELECT * FROM runs WHERE status = ?"
        params: list[Any] = [RUNNING]
        if device is not None:
            sql += " AND device = ?"
            params.append(device)
        with self._connect() as conn:
            row = conn.execute(sql + " ORDER BY started_at, id LIMIT 1", params).fetchone()
            return None if row is None else Run._from_row(row)

    # -- progress, metrics and snapshots -------------------------------------------------------------
    def set_progress(self, run_id: int, progress: float, message: str | None = None) -> None:
        """Record how far a run is (clamped to 0..1); ``message=None`` keeps the previous message."""
        progress = float(progress)
        if math.isnan(progress):
            raise ValueError(f"progress of run {run_id} must be a number in [0, 1], got NaN")
        with self._connect(write=True) as conn:
            self._require(conn, run_id)
            conn.execute(
                "UPDATE runs SET progress = ?, message = COALESCE(?, message) WHERE id = ?",
                (min(max(progress, 0.0), 1.0), message, run_id),
            )

    def log_metrics(self, run_id: int, step: int, values: dict[str, float]) -> None:
        """Record scalar metrics (loss, learning rate, a dev score...) at a training step."""
        now = time.time()
        rows = [(run_id, int(step), str(name), float(value), now) for name, value in values.items()]
        with self._connect(write=True) as conn:
            self._require(conn, run_id)
            conn.executemany("INSERT INTO metrics (run_id, step, name, value, created_at) VALUES (?, ?, ?, ?, ?)", rows)

    def metrics(self, run_id: int) -> pd.DataFrame:
        """All metrics of a run in long form: columns ``step, name, value, created_at``, ordered by step."""
        import pandas as pd  # imported here: the worker process never needs pandas

        with self._connect() as conn:
            self._require(conn, run_id)
            rows = conn.execute(
                f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE run_id = ? ORDER BY step, rowid",
                (run_id,),
            ).fetchall()
        frame = pd.DataFrame([tuple(row) for row in rows], columns=METRIC_COLUMNS)
        return frame.astype({"step": "int64", "value": "float64", "created_at": "float64"})

    def add_snapshot(self, run_id: int, step: int, payload: dict[str, Any]) -> None:
        """Record a snapshot (e.g. the fusion weights per layer) taken at a training step."""
        payload_json = _dumps(payload, "snapshot payload")
        with self._connect(write=True) as conn:
            self._require(conn, run_id)
            conn.execute(
                "INSERT INTO snapshots (run_id, step, payload, created_at) VALUES (?, ?, ?, ?)",
                (run_id, int(step), payload_json, time.time()),
            )

    def snapshots(self, run_id: int) -> list[Snapshot]:
        """A run's snapshots in step order."""
        with self._connect() as conn:
            self._require(conn, run_id)
            rows = conn.execute(
                "SELECT step, payload, created_at FROM snapshots WHERE run_id = ? ORDER BY step, rowid",
                (run_id,),
            ).fetchall()
        return [Snapshot(row["step"], json.loads(row["payload"]), row["created_at"]) for row in rows]

    # -- ending runs ---------------------------------------------------------------------------------
    def finish(self, run_id: int, final_metrics: dict[str, Any], artifacts: dict[str, Any]) -> None:
        """Mark a running run finished, with its final metrics and artifacts (e.g. checkpoint paths)."""
        self._transition(
            run_id,
            (RUNNING,),
            "finish",
            "UPDATE runs SET status = ?, ended_at = ?, progress = 1, final_metrics = ?, artifacts = ? WHERE id = ?",
            (FINISHED, time.time(), _dumps(final_metrics, "final metrics"), _dumps(artifacts, "artifacts")),
        )

    def fail(self, run_id: int, error: str) -> None:
        """Mark a queued or running run failed; ``error`` should start with a readable one-line reason."""
        self._transition(
            run_id,
            (QUEUED, RUNNING),
            "fail",
            "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?",
            (FAILED, time.time(), str(error)),
        )

    def mark_cancelled(self, run_id: int) -> None:
        """Mark a queued or running run cancelled (the worker calls this once the executor has stopped)."""
        self._transition(
            run_id,
            (QUEUED, RUNNING),
            "cancel",
            "UPDATE runs SET status = ?, ended_at = ?, cancel_requested = 1 WHERE id = ?",
            (CANCELLED, time.time()),
        )

    def request_cancel(self, run_id: int) -> str:
        """Ask for a run to stop and return its status afterwards.

        A queued run is cancelled at once. A running one only gets ``cancel_requested`` set: the process
        running it owns it and stops at its next check, after which the worker marks it cancelled. An ended
        run is left as it is, so a second click on "cancel" is harmless.
        """
        with self._connect(write=True) as conn:
            status = self._require(conn, run_id)["status"]
            if status == QUEUED:
                conn.execute(
                    "UPDATE runs SET status = ?, ended_at = ?, cancel_requested = 1 WHERE id = ?",
                    (CANCELLED, time.time(), run_id),
                )
                return CANCELLED
            if status == RUNNING:
                conn.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
            return status

    def is_cancel_requested(self, run_id: int) -> bool:
        """Whether someone asked this run to stop (true as well for a run already cancelled)."""
        with self._connect() as conn:
            row = self._require(conn, run_id)
            return bool(row["cancel_requested"]) or row["status"] == CANCELLED

    def mark_dead_runs_failed(self, alive: Callable[[int], bool]) -> list[int]:
        """Fail every running run whose worker process is gone, and return their ids.

        A worker killed with SIGKILL (or by the OOM killer, or a crash in native code) cannot record
        anything, so its run would otherwise show "running" forever. ``alive(pid)`` decides whether a worker
        still exists.

        A run a Ray dispatcher held (``backend = 'ray'``) is put back in the queue instead: it executed on the
        cluster, not in the dead process, and nothing of it was published (only the dispatcher publishes), so
        the next dispatcher runs it again — the run is neither lost nor done twice.
        """
        query = "SELECT id, worker_pid, backend, cancel_requested FROM runs WHERE status = ?"
        with self._connect() as conn:  # every dashboard poll calls this: a cheap read first, no write lock
            rows = conn.execute(query, (RUNNING,)).fetchall()
        if all(row["worker_pid"] is not None and alive(row["worker_pid"]) for row in rows):
            return []
        dead: list[int] = []
        with self._connect(write=True) as conn:
            for row in conn.execute(query, (RUNNING,)).fetchall():
                pid = row["worker_pid"]
                if pid is not None and alive(pid):
                    continue
                if row["backend"] == "ray" and not row["cancel_requested"]:
                    _requeue(conn, row["id"], f"queued again: its Ray dispatcher (process {pid}) stopped")
                    continue
                who = "its worker process" if pid is None else f"worker process {pid}"
                conn.execute(
                    "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                    (
                        FAILED,
                        time.time(),
                        f"{who} died while the run was running (killed or crashed)",
                        row["id"],
                    ),
                )
                dead.append(row["id"])
        return dead
