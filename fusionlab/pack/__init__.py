"""The pretrained adapter pack: task adapters and fusions trained by fusionlab itself, shipped in the package.

Like AdapterHub's hub of task adapters, but offline and reproducible: :mod:`fusionlab.pack.recipe` is the
fixed recipe, ``fusionlab pack build`` rebuilds everything from the task data, every artifact carries a card
(:mod:`fusionlab.pack.card`), and :func:`install_pack` puts the pack into a workspace after checking hashes.

The public names are imported lazily, as in :mod:`fusionlab`: importing :mod:`fusionlab.pack.recipe` (the
budgets, and so ``fusionlab --help``) must not load torch through :mod:`fusionlab.pack.store`'s checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusionlab.lazy import lazy_getattr

_EXPORTS = {
    "ArtifactCard": "fusionlab.pack.card",
    "DataRecord": "fusionlab.pack.card",
    "DevScore": "fusionlab.pack.card",
    "PACK_DIR": "fusionlab.pack.store",
    "PackError": "fusionlab.pack.store",
    "PackManifest": "fusionlab.pack.store",
    "install_pack": "fusionlab.pack.store",
    "is_pack_artifact": "fusionlab.pack.store",
    "pack_dir": "fusionlab.pack.store",
    "read_card": "fusionlab.pack.store",
    "ready_workspace": "fusionlab.pack.store",
}

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

if TYPE_CHECKING:  # pragma: no cover
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


__getattr__ = lazy_getattr("fusionlab.pack", _EXPORTS, globals())
