"""Where queued runs execute: the backend a worker serves the queue with, as one typed setting.

Two backends serve a workspace's run queue (the SQLite run store, which never leaves the workspace's machine):

* ``local`` (the default, with nothing to install or start): one ``fusionlab worker`` process per device on this
  machine executes the runs one after another (:mod:`fusionlab.worker`);
* ``ray``: one dispatcher process on this machine hands the runs to a Ray cluster, as many at once as it has
  room for (:mod:`fusionlab.ray_backend`; needs ``pip install "fusionlab[ray]"``).

The command line (``fusionlab worker --backend ray --ray-address …``), the dashboard's server settings and the
environment (``FUSIONLAB_BACKEND``, ``FUSIONLAB_RAY_ADDRESS``, ``FUSIONLAB_CPUS_PER_RUN``,
``FUSIONLAB_GPUS_PER_RUN``) all build one :class:`BackendSettings`; :func:`fusionlab.worker.ensure_worker` reads
it from the environment, so "Queue" on the Train page and ``fusionlab train`` start the same backend. This
module imports nothing heavy (no Ray): it is read by ``fusionlab --help``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from fusionlab.config import JsonConfig, _fail
from fusionlab.schema import stamp, upgrade

LOCAL = "local"
RAY = "ray"
BACKENDS = (LOCAL, RAY)

BACKEND_ENV = "FUSIONLAB_BACKEND"
RAY_ADDRESS_ENV = "FUSIONLAB_RAY_ADDRESS"
CPUS_PER_RUN_ENV = "FUSIONLAB_CPUS_PER_RUN"
GPUS_PER_RUN_ENV = "FUSIONLAB_GPUS_PER_RUN"
_ENV = {
    "backend": BACKEND_ENV,
    "ray_address": RAY_ADDRESS_ENV,
    "cpus_per_run": CPUS_PER_RUN_ENV,
    "gpus_per_run": GPUS_PER_RUN_ENV,
}

RAY_LOCK_NAME = "ray"
"""The dispatcher's lock file is ``worker-ray.lock``: one dispatcher per workspace, whatever the devices."""
DEFAULT_MAX_ATTEMPTS = 3
MAX_PER_RUN = 1024


@dataclass
class BackendSettings(JsonConfig):
    """The backend and, for Ray, where the cluster is and what each run needs of it."""

    backend: str = LOCAL
    ray_address: str = "auto"
    """``auto`` (the cluster this machine belongs to), ``local`` (start Ray on this machine), ``ray://host:port``
    (Ray Client) or a GCS address ``host:port``."""
    cpus_per_run: float = 1.0
    gpus_per_run: float | None = None
    """``None``: 1 where the cluster has GPUs, else 0 (decided when the dispatcher connects)."""
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    """How often a run may be started before a lost node fails it for good."""

    def validate(self) -> None:
        self._choice("backend", BACKENDS)
        if not isinstance(self.ray_address, str) or not self.ray_address.strip() or " " in self.ray_address.strip():
            _fail(
                "BackendSettings",
                "ray_address",
                f"must be auto, local, ray://host:port or host:port, got {self.ray_address!r}",
            )
        self.ray_address = self.ray_address.strip()
        self._bounded_number("cpus_per_run", 0.0, MAX_PER_RUN, low_open=False)
        if self.gpus_per_run is not None:
            self._bounded_number("gpus_per_run", 0.0, MAX_PER_RUN, low_open=False)
        self._bounded_int("max_attempts", 100)

    @property
    def is_ray(self) -> bool:
        return self.backend == RAY

    def to_dict(self) -> dict[str, Any]:
        return stamp(super().to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackendSettings:
        return super().from_dict(upgrade(dict(data), "backend settings"))

    def argv(self) -> list[str]:
        """These settings as ``fusionlab worker`` flags (what :func:`fusionlab.worker.ensure_worker` spawns)."""
        if not self.is_ray:
            return []
        argv = ["--backend", RAY, "--ray-address", self.ray_address, "--cpus-per-run", f"{self.cpus_per_run:g}"]
        if self.gpus_per_run is not None:
            argv += ["--gpus-per-run", f"{self.gpus_per_run:g}"]
        return [*argv, "--max-attempts", str(self.max_attempts)]

    def export(self, environ: MutableMapping[str, str]) -> None:
        """Write these settings into ``environ`` (the dashboard's, so that the workers it starts use them)."""
        environ[BACKEND_ENV] = self.backend
        environ[RAY_ADDRESS_ENV] = self.ray_address
        environ[CPUS_PER_RUN_ENV] = f"{self.cpus_per_run:g}"
        if self.gpus_per_run is None:
            environ.pop(GPUS_PER_RUN_ENV, None)
        else:
            environ[GPUS_PER_RUN_ENV] = f"{self.gpus_per_run:g}"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> BackendSettings:
        """The settings ``$FUSIONLAB_BACKEND`` and friends give (the local backend when none is set)."""
        return cls.from_dict(environment_values(os.environ if environ is None else environ))


def environment_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The backend settings the environment sets, as plain values (``ValueError`` naming a bad variable)."""
    values: dict[str, Any] = {}
    for key, variable in _ENV.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        if key in ("cpus_per_run", "gpus_per_run"):
            try:
                values[key] = float(raw)
            except ValueError:
                raise ValueError(f"${variable} must be a number, got {raw!r}") from None
        else:
            values[key] = raw.lower() if key == "backend" else raw
    return values


def add_backend_flags(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """``--backend``, ``--ray-address``, ``--cpus-per-run``, ``--gpus-per-run`` (the worker's and the server's).

    With ``defaults=False`` an absent flag is ``None``, so the server's environment and file can fill it.
    """
    base = BackendSettings()
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=base.backend if defaults else None,
        help="where runs execute: local (a worker on this machine) or ray (a dispatcher handing runs to a Ray "
        "cluster; pip install 'fusionlab[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        default=base.ray_address if defaults else None,
        help="with --backend ray: auto, local (start Ray here), ray://host:port or a GCS host:port",
    )
    parser.add_argument(
        "--cpus-per-run", type=float, default=base.cpus_per_run if defaults else None, help="with ray: CPUs per run"
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        help="with ray: GPUs per run (default: 1 where the cluster has GPUs, else 0)",
    )


BACKEND_FLAGS = ("backend", "ray_address", "cpus_per_run", "gpus_per_run")
