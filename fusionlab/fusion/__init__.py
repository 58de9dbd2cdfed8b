"""Fusion layers (attention, weighted, average) and, as in the original notebook, the model and manager.

``from fusionlab.fusion import FusionModel, AdapterManager`` works as the notebook's ``from fusion import ...``
did; those two are loaded lazily because the model itself imports the fusion layers.
"""

from fusionlab.fusion.attention import AttentionFusion
from fusionlab.fusion.average import AverageFusion
from fusionlab.fusion.base import FusionLayer, FusionOutput
from fusionlab.fusion.registry import FUSION_CLASSES, build_fusion
from fusionlab.fusion.weighted import WeightedFusion

__all__ = [
    "FUSION_CLASSES",
    "AdapterManager",
    "AttentionFusion",
    "AverageFusion",
    "FusionLayer",
    "FusionModel",
    "FusionOutput",
    "WeightedFusion",
    "build_fusion",
]


def __getattr__(name: str):
    if name == "FusionModel":
        from fusionlab.model import FusionModel

        return FusionModel
    if name == "AdapterManager":
        from fusionlab.adapters import AdapterManager

        return AdapterManager
    raise AttributeError(f"module 'fusionlab.fusion' has no attribute {name!r}")
