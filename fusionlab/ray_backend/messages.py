"""What crosses between the dispatcher and a cluster node: typed, validated, versioned messages.

A run leaves the workspace's machine as a :class:`RunPayload` (its kind, config and executor, plus its input
files in Ray's object store), reports back as :class:`Report` events while it runs, and ends as a
:class:`RunOutcome` (plus its artifact files). Each is JSON with a ``wire_version``: a node running another
fusionlab than the dispatcher is told so plainly instead of misreading a field.

Paths cannot cross as they are — the node has no workspace, and its temporary one has another root — so a path
inside the run's workspace travels as :data:`NODE_ROOT` followed by its place in the workspace
(``@workspace/adapters/rte``), and each side puts its own root in front (:func:`rebase`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from fusionlab.config import JsonConfig, _fail

WIRE_VERSION = 1
WIRE_KEY = "wire_version"
NODE_ROOT = "@workspace"
"""Stands for the root of the run's workspace in every path that crosses (config, artifacts, final metrics)."""

FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
OUTCOMES = (FINISHED, FAILED, CANCELLED)

STARTED = "started"
METRICS = "metrics"
SNAPSHOT = "snapshot"
PROGRESS = "progress"
REPORT_KINDS = (STARTED, METRICS, SNAPSHOT, PROGRESS)

Files = dict[str, bytes]
"""A bundle of files by their place in the run's workspace (POSIX, relative): what the object store carries."""


class WireError(ValueError):
    """A message that this fusionlab cannot read (another version, a bad field)."""


class _Message(JsonConfig):
    """A dataclass that crosses a process: JSON text with :data:`WIRE_VERSION`, validated on both ends."""

    _what: ClassVar[str] = "message"

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps({**self.to_dict(), WIRE_KEY: WIRE_VERSION}, default=_plain, indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as err:
            raise WireError(f"a {cls._what} must be JSON text: {err}") from err
        if not isinstance(data, dict):
            raise WireError(f"a {cls._what} must be a JSON object, got {type(data).__name__}")
        version = data.pop(WIRE_KEY, None)
        if version != WIRE_VERSION:
            raise WireError(
                f"a {cls._what} of wire version {version!r} reached a fusionlab that speaks version {WIRE_VERSION}: "
                "install the same fusionlab on the dispatcher's machine and on every cluster node"
            )
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise WireError(f"a {cls._what} is invalid: {err}") from err

    def _int(self, name: str, low: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            _fail(type(self).__name__, name, f"must be an integer >= {low}, got {value!r}")

    def _str(self, name: str, allow_none: bool = False) -> None:
        value = getattr(self, name)
        if not (isinstance(value, str) and value) and not (allow_none and value is None):
            _fail(type(self).__name__, name, f"must be a non-empty string, got {value!r}")

    def _dict(self, name: str) -> None:
        if not isinstance(getattr(self, name), dict):
            _fail(type(self).__name__, name, f"must be a JSON object, got {type(getattr(self, name)).__name__}")


def _plain(value: Any) -> Any:
    """What executors naturally hand over (paths, numpy scalars and arrays) as plain JSON values."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def plain(value: Any) -> Any:
    """``value`` as plain JSON data (``TypeError`` for what cannot be)."""
    return json.loads(json.dumps(value, default=_plain))


@dataclass
class RunPayload(_Message):
    """One attempt of one run, as the node executes it."""

    _what: ClassVar[str] = "run payload"

    run_id: int
    attempt: int
    kind: str
    name: str
    config: dict[str, Any]
    """The run's stored config, its workspace paths written from :data:`NODE_ROOT`."""
    executor: str
    """``module:function``, resolved by the dispatcher (its ``$FUSIONLAB_EXECUTORS`` included)."""
    device: str = "cpu"
    """What the executor sees as its device: ``cpu``, or ``auto`` for a run given GPUs (Ray sets
    ``CUDA_VISIBLE_DEVICES`` for the task)."""
    inputs: list[str] = field(default_factory=list)
    """The files sent along (their places in the workspace), for the record."""

    def validate(self) -> None:
        self._int("run_id", 1)
        self._int("attempt", 1)
        self._str("kind")
        if not isinstance(self.name, str):
            _fail("RunPayload", "name", f"must be a string, got {self.name!r}")
        self._dict("config")
        module, colon, function = self.executor.partition(":") if isinstance(self.executor, str) else ("", "", "")
        if not (module and colon and function):
            _fail("RunPayload", "executor", f"must be module:function, got {self.executor!r}")
        self._str("device")
        if not isinstance(self.inputs, list) or not all(isinstance(p, str) for p in self.inputs):
            _fail("RunPayload", "inputs", f"must be a list of paths, got {self.inputs!r}")


@dataclass
class RunOutcome(_Message):
    """How an attempt ended on its node, as the dispatcher records it (its artifact files travel beside it)."""

    _what: ClassVar[str] = "run outcome"

    run_id: int
    attempt: int
    status: str
    node: str
    final_metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    """As the executor returned them, workspace paths written from :data:`NODE_ROOT`."""
    published: list[str] = field(default_factory=list)
    """The artifact roots (directories or files, places in the workspace) whose files came back."""
    error: str | None = None

    def validate(self) -> None:
        self._int("run_id", 1)
        self._int("attempt", 1)
        self._choice("status", OUTCOMES)
        self._str("node")
        self._dict("final_metrics")
        self._dict("artifacts")
        for place in self.published:
            check_place(place)
        if self.status == FAILED:
            self._str("error")


@dataclass
class Report(_Message):
    """One live event of a running attempt: where it started, a step's metrics, a snapshot, its progress."""

    _what: ClassVar[str] = "report"

    run_id: int
    attempt: int
    kind: str
    step: int = 0
    values: dict[str, float] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    progress: float = 0.0
    message: str | None = None
    node: str | None = None

    def validate(self) -> None:
        self._int("run_id", 1)
        self._int("attempt", 1)
        self._choice("kind", REPORT_KINDS)
        self._int("step", 0)
        self._dict("values")
        self._dict("payload")
        if self.kind == METRICS:
            for key, value in self.values.items():
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    _fail("Report", "values", f"{key} must be a number, got {value!r}")
        if isinstance(self.progress, bool) or not isinstance(self.progress, (int, float)) or math.isnan(self.progress):
            _fail("Report", "progress", f"must be a number, got {self.progress!r}")
        if self.kind == STARTED:
            self._str("node")


# -- paths across the wire -----------------------------------------------------------------------------
def check_place(place: str) -> str:
    """A place in the workspace (``adapters/rte``): relative, POSIX, never climbing out (``ValueError`` else)."""
    path = PurePosixPath(place) if isinstance(place, str) else None
    if path is None or not place or path.is_absolute() or ".." in path.parts or "\\" in place or "\0" in place:
        raise ValueError(f"{place!r} is not a place inside a workspace")
    return str(path)


def rebase(value: Any, old: str, new: str) -> Any:
    """``value`` with every string that starts with the root ``old`` starting with ``new`` instead."""
    if isinstance(value, str):
        if value == old:
            return new
        if value.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + value[len(old.rstrip("/")) :]
        return value
    if isinstance(value, dict):
        return {k: rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [rebase(v, old, new) for v in value]
    return value


def places(value: Any) -> list[str]:
    """The workspace places (``@workspace/...``) that ``value`` names, in order, each once."""
    found: list[str] = []
    if isinstance(value, str) and value.startswith(NODE_ROOT + "/"):
        found.append(check_place(value[len(NODE_ROOT) + 1 :]))
    elif isinstance(value, dict):
        for item in value.values():
            found += places(item)
    elif isinstance(value, list):
        for item in value:
            found += places(item)
    return list(dict.fromkeys(found))


def pack(root: Path, place: str) -> Files:
    """The files of ``root / place`` (a directory, recursively, or one file), keyed by their places."""
    path = root / check_place(place)
    if path.is_file():
        return {place: path.read_bytes()}
    return {
        str(PurePosixPath(place) / file.relative_to(path).as_posix()): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file()
    }


def unpack(files: Files, root: Path) -> None:
    """Write a bundle under ``root`` (a node's temporary workspace)."""
    for place, data in files.items():
        target = root / check_place(place)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
