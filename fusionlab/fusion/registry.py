"""The fusion methods, one registration each: the config's names, the classes, and how to build a layer.

The names live in :data:`fusionlab.config.FUSION_METHODS` (what a config, the CLI and the dashboard pickers
accept); each name maps to the class whose ``method`` it is, checked when this module is imported, so a name
without a class (or a class without a name) fails at once instead of falling back to another method.
"""

from __future__ import annotations

from fusionlab.config import FUSION_METHODS, FusionConfig
from fusionlab.fusion.attention import AttentionFusion
from fusionlab.fusion.average import AverageFusion
from fusionlab.fusion.base import FusionLayer
from fusionlab.fusion.weighted import WeightedFusion

FUSION_CLASSES: dict[str, type[FusionLayer]] = {
    cls.method: cls for cls in (AttentionFusion, WeightedFusion, AverageFusion)
}
if tuple(FUSION_CLASSES) != FUSION_METHODS:  # pragma: no cover - a programming error, caught by any import
    raise ImportError(f"fusion classes {tuple(FUSION_CLASSES)} do not match FUSION_METHODS {FUSION_METHODS}")

LEARNED_WEIGHT_METHODS = tuple(name for name, cls in FUSION_CLASSES.items() if cls.learns_weights)
"""Methods whose weights over adapters are learned: the ones worth showing as what a fusion chose."""


def fusion_class(method: str) -> type[FusionLayer]:
    """The class of fusion ``method``; ``ValueError`` naming the known methods for any other name."""
    try:
        return FUSION_CLASSES[method]
    except KeyError:
        raise ValueError(f"unknown fusion method {method!r}; known: {', '.join(FUSION_CLASSES)}") from None


def build_fusion(config: FusionConfig, hidden_size: int) -> FusionLayer:
    """One fusion layer over ``config.adapter_names`` for states of size ``hidden_size``."""
    return fusion_class(config.fusion_method).from_config(config, hidden_size)
