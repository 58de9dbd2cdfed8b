"""The pretrained adapter pack: task adapters and fusions trained by fusionlab itself, shipped in the package.

Like AdapterHub's hub of task adapters, but offline and reproducible: :mod:`fusionlab.pack.recipe` is the
fixed recipe, ``fusionlab pack build`` rebuilds everything from the task data, every artifact carries a card
(:mod:`fusionlab.pack.card`), and :func:`install_pack` puts the pack into a workspace after checking hashes.
"""

from fusionlab.pack.card import ArtifactCard, DataRecord, DevScore
from fusionlab.pack.store import (
    PACK_DIR,
    PackError,
    PackManifest,
    install_pack,
    is_pack_artifact,
    pack_dir,
    read_card,
    ready_workspace,
)

__all__ = [
    "PACK_DIR",
    "ArtifactCard",
    "DataRecord",
    "DevScore",
    "PackError",
    "PackManifest",
    "install_pack",
    "is_pack_artifact",
    "pack_dir",
    "read_card",
    "ready_workspace",
]
