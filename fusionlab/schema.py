"""The version of every record fusionlab stores, and the one place that reads old records forward.

Runs cross processes and time: a run queued today is executed by a worker started tomorrow, its row is read by
a Runs page a year later, a checkpoint outlives the code that wrote it. So each stored record — a run store row's
config and result, a checkpoint's ``fusionlab.json``, a pack card — carries ``schema_version``, and readers pass
it through :func:`upgrade` before building their typed dataclasses:

* an older record is brought forward one version at a time by :data:`UPGRADES` (a renamed field is renamed
  there, once, instead of in every reader);
* a record from a *newer* fusionlab is refused with a message that says so, instead of "unknown field";
* records written before versions existed read as version 1.

The run store's own tables are versioned separately, by SQLite's ``PRAGMA user_version`` (see
:mod:`fusionlab.runstore`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 2
"""1: records written before versions were recorded (no ``schema_version`` key). 2: the key itself; a run's
result gained its interval, selection and paired-comparison fields, all optional."""

SCHEMA_KEY = "schema_version"


class NewerSchemaError(ValueError):
    """A record was written by a newer fusionlab than this one."""


def _v1_to_v2(record: dict[str, Any]) -> dict[str, Any]:
    """Nothing was renamed: version 2 only added optional fields."""
    return record


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}
"""``version -> function`` bringing a record of that version to the next one."""


def stamp(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with the current :data:`SCHEMA_VERSION` (what every writer stores)."""
    return {**record, SCHEMA_KEY: SCHEMA_VERSION}


def record_version(record: dict[str, Any], where: str) -> int:
    version = record.get(SCHEMA_KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{where}: {SCHEMA_KEY} must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{where} was written by a newer fusionlab (record schema {version}; this one reads up to "
            f"{SCHEMA_VERSION}): upgrade fusionlab (pip install -U fusionlab) to read it"
        )
    return version


def upgrade(record: dict[str, Any], where: str) -> dict[str, Any]:
    """``record`` brought to :data:`SCHEMA_VERSION`, without its ``schema_version`` key (for the typed readers).

    ``where`` names the record in messages (a file, a run id). Raises :class:`NewerSchemaError` for a record
    from a newer fusionlab.
    """
    version = record_version(record, where)
    data = {k: v for k, v in record.items() if k != SCHEMA_KEY}
    while version < SCHEMA_VERSION:
        data = UPGRADES[version](data)
        version += 1
    return data
