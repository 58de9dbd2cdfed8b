"""Where the dashboard reads from: the workspace and the data directory.

Every page reads them through :func:`fusionlab.dashboard.widgets.session_settings`; ``app.py`` lets the user
change them in the sidebar. Defaults come
from the environment (``FUSIONLAB_HOME``, ``FUSIONLAB_DATA_DIR``) exactly as for the CLI, so
``streamlit run app.py`` and ``fusionlab ...`` look at the same workspace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fusionlab.data.loading import resolve_data_dir
from fusionlab.pack.store import ready_workspace
from fusionlab.workspace import Workspace

HOME_KEY = "fusionlab_home"
DATA_KEY = "fusionlab_data_dir"


@dataclass(frozen=True)
class Settings:
    workspace: Workspace
    data_dir: Path | None

    @property
    def data_dir_str(self) -> str | None:
        return str(self.data_dir) if self.data_dir else None


def resolve_settings(home: str | None = None, data_dir: str | None = None) -> Settings:
    """Settings from explicit values, else the environment, else the defaults; the workspace is created and
    the pretrained pack installed in it, so a fresh machine opens on trained adapters and fusions."""
    workspace = ready_workspace(home or None)
    return Settings(workspace=workspace, data_dir=resolve_data_dir(data_dir or None))


def default_home() -> str:
    return str(Workspace(os.environ.get("FUSIONLAB_HOME") or None).root)


def default_data_dir() -> str:
    """The data directory the CLI would use (``$FUSIONLAB_DATA_DIR``, else ``../shared/data``), or ""."""
    return str(resolve_data_dir() or "")
