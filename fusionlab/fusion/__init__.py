"""Fusion layers: attention, weighted and average (one registration each, see :mod:`.registry`).

The notebook's ``from fusion import FusionModel, AdapterManager`` becomes ``from fusionlab import FusionModel,
AdapterManager``: the model is built from these layers, so it is not re-exported from here.
"""

from fusionlab.fusion.attention import AttentionFusion
from fusionlab.fusion.average import AverageFusion
from fusionlab.fusion.base import FusionLayer, FusionOutput
from fusionlab.fusion.registry import FUSION_CLASSES, build_fusion, fusion_class, learned_weight_methods
from fusionlab.fusion.weighted import WeightedFusion

__all__ = [
    "FUSION_CLASSES",
    "AttentionFusion",
    "AverageFusion",
    "FusionLayer",
    "FusionOutput",
    "WeightedFusion",
    "build_fusion",
    "fusion_class",
    "learned_weight_methods",
]
