"""The dashboard server's own settings: chosen by whoever starts ``streamlit run app.py``, never by a visitor.

A teacher runs one server and thirty students open it, so nothing a browser sends may name a path: the
workspaces a visitor can pick from are the ones that already exist under the configured root, and the data
directory is fixed. Sources, later ones winning: a JSON file named by ``$FUSIONLAB_SERVER_CONFIG``, the
environment (``FUSIONLAB_HOME``, ``FUSIONLAB_WORKSPACE_ROOT``, ``FUSIONLAB_DATA_DIR``, ``FUSIONLAB_CLASSROOM``,
``FUSIONLAB_MAX_QUEUED``, ``FUSIONLAB_TEACHER_PASSPHRASE``, and the backend's ``FUSIONLAB_BACKEND``,
``FUSIONLAB_RAY_ADDRESS``, ``FUSIONLAB_CPUS_PER_RUN``, ``FUSIONLAB_GPUS_PER_RUN``), then the flags after ``--``::

    streamlit run app.py -- --classroom --workspace-root /srv/fusionlab --max-queued 2
    streamlit run app.py -- --backend ray --ray-address auto     # "Queue" sends runs to a Ray cluster

Started with none of them, the server is today's single-user dashboard on ``./fusionlab-workspace``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionlab.backends import BACKEND_FLAGS, LOCAL, BackendSettings, add_backend_flags
from fusionlab.backends import environment_values as backend_environment
from fusionlab.config import JsonConfig, _fail
from fusionlab.workspace import CHECKPOINT_MARKER, Workspace

CONFIG_ENV = "FUSIONLAB_SERVER_CONFIG"
MAX_QUEUE_QUOTA = 100
MAX_WORKSPACES = 200

_ENV = {
    "home": "FUSIONLAB_HOME",
    "workspace_root": "FUSIONLAB_WORKSPACE_ROOT",
    "data_dir": "FUSIONLAB_DATA_DIR",
    "classroom": "FUSIONLAB_CLASSROOM",
    "max_queued_per_visitor": "FUSIONLAB_MAX_QUEUED",
    "teacher_passphrase": "FUSIONLAB_TEACHER_PASSPHRASE",
}


@dataclass
class ServerConfig(JsonConfig):
    """Where the server's workspaces and data are, and whether it serves a classroom."""

    home: str = ""
    """The workspace a visitor starts on (default ``$FUSIONLAB_HOME`` or ``./fusionlab-workspace``)."""
    workspace_root: str | None = None
    """A directory whose existing sub-directories that are workspaces are offered besides ``home``."""
    data_dir: str | None = None
    classroom: bool = False
    """Visitors get names, may cancel only their own runs, queue at most ``max_queued_per_visitor`` runs, and
    only the teacher (who knows the passphrase) may prepare the demo or cancel anyone's run."""
    max_queued_per_visitor: int = 3
    teacher_passphrase: str | None = field(default=None, repr=False)
    backend: str = LOCAL
    """Where "Queue" sends runs: ``local`` (a worker on this machine) or ``ray`` (a cluster; see
    :mod:`fusionlab.backends`), with the cluster's address and what each run needs of it."""
    ray_address: str = "auto"
    cpus_per_run: float = 1.0
    gpus_per_run: float | None = None

    def validate(self) -> None:
        self.home = self.home or str(Workspace(None).root)
        self.backend_settings()  # its own checks
        if not isinstance(self.classroom, bool):
            _fail("ServerConfig", "classroom", f"must be true or false, got {self.classroom!r}")
        self._bounded_int("max_queued_per_visitor", MAX_QUEUE_QUOTA)
        if self.teacher_passphrase is not None and len(self.teacher_passphrase) < 8:
            _fail("ServerConfig", "teacher_passphrase", "must have at least 8 characters")

    def backend_settings(self) -> BackendSettings:
        """The backend the workers this server starts use (exported to its environment by the dashboard)."""
        return BackendSettings(
            backend=self.backend,
            ray_address=self.ray_address,
            cpus_per_run=self.cpus_per_run,
            gpus_per_run=self.gpus_per_run,
        )

    @property
    def home_workspace(self) -> Workspace:
        return Workspace(self.home)

    def workspaces(self) -> list[Workspace]:
        """The workspaces a visitor may choose from: ``home`` first, then those that exist under the root.

        Only directories directly under the root that already hold a workspace (its run database or a
        checkpoint) count, hidden ones and links leading elsewhere excluded; nothing is created here.
        """
        found = [self.home_workspace]
        root = Path(self.workspace_root).expanduser().resolve() if self.workspace_root else None
        if root is not None and root.is_dir():
            for entry in sorted(root.iterdir())[:MAX_WORKSPACES]:
                if entry.name.startswith(".") or not entry.is_dir() or entry.resolve().parent != root:
                    continue
                if _is_workspace(entry) and entry.resolve() != found[0].root.resolve():
                    found.append(Workspace(entry))
        return found

    def resolved_data_dir(self) -> Path | None:
        # imported here: the data layer loads transformers, and `fusionlab --help` reads this module's flags
        from fusionlab.data.loading import resolve_data_dir

        return resolve_data_dir(self.data_dir)

    def is_teacher_passphrase(self, typed: str | None) -> bool:
        """Whether ``typed`` is the teacher's passphrase (constant-time; never true when none is set)."""
        if not self.teacher_passphrase or not typed:
            return False
        return hmac.compare_digest(typed.encode(), self.teacher_passphrase.encode())


def _is_workspace(directory: Path) -> bool:
    if (directory / "runs.sqlite").is_file():
        return True
    return any(
        (directory / kind / name / CHECKPOINT_MARKER).is_file()
        for kind in ("adapters", "fusions")
        for name in _children(directory / kind)
    )


def _children(directory: Path) -> list[str]:
    try:
        return [entry.name for entry in directory.iterdir()][:MAX_WORKSPACES]
    except OSError:
        return []


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """The server's flags: read after ``--`` by the dashboard, and checked by ``fusionlab serve`` before it starts."""
    parser.add_argument("--home", help="the workspace visitors start on")
    parser.add_argument("--workspace-root", help="more workspaces to choose from: those that exist under it")
    parser.add_argument("--data-dir", help="task data directory")
    parser.add_argument("--classroom", action="store_true", default=None, help="classroom mode (names, quotas)")
    parser.add_argument("--max-queued", type=int, dest="max_queued_per_visitor", help="runs one visitor may queue")
    parser.add_argument("--teacher-passphrase-file", help="a file holding the passphrase (not on the command line)")
    add_backend_flags(parser, defaults=False)


SERVER_FLAGS = (
    "home",
    "workspace_root",
    "data_dir",
    "classroom",
    "max_queued_per_visitor",
    "teacher_passphrase_file",
    *BACKEND_FLAGS,
)


def _flags(argv: Sequence[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="streamlit run app.py --", add_help=False, allow_abbrev=False)
    add_server_flags(parser)
    args, _ = parser.parse_known_args(list(argv))
    values = {k: v for k, v in vars(args).items() if v is not None and k != "teacher_passphrase_file"}
    if args.teacher_passphrase_file:
        values["teacher_passphrase"] = Path(args.teacher_passphrase_file).read_text(encoding="utf-8").strip()
    return values


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, variable in _ENV.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        if key == "classroom":
            values[key] = raw.lower() in ("1", "true", "yes", "on")
        elif key == "max_queued_per_visitor":
            try:
                values[key] = int(raw)
            except ValueError:
                raise ValueError(f"${variable} must be an integer, got {raw!r}") from None
        else:
            values[key] = raw
    values.update(backend_environment(environ))
    return values


def load_server_config(argv: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> ServerConfig:
    """The server's settings from its config file, environment and flags (see the module docstring)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = environ.get(CONFIG_ENV, "").strip()
    if path:
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"${CONFIG_ENV} names {path}, which cannot be read as JSON: {err}") from err
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a JSON object of server settings")
        values.update(loaded)
    values.update(_from_environment(environ))
    values.update(_flags(argv))
    return ServerConfig.from_dict(values)
