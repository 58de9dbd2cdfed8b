"""Where the dashboard reads from: the workspace and the data directory.

Every page reads them through :func:`fusionlab.dashboard.widgets.session_settings`. They come from the server's
own settings (:mod:`fusionlab.dashboard.server_config`: a file, the environment as for the CLI, flags), never
from a visitor: the sidebar offers a choice among the workspaces that exist (``WORKSPACE_KEY``) and shows the
data directory. ``HOME_KEY``/``DATA_KEY`` in the session state are a server-side override no widget writes
(tests and embedding use them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusionlab.data.loading import resolve_data_dir
from fusionlab.pack.store import ready_workspace
from fusionlab.workspace import Workspace

HOME_KEY = "fusionlab_home"
DATA_KEY = "fusionlab_data_dir"
WORKSPACE_KEY = "fusionlab_workspace_choice"


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
