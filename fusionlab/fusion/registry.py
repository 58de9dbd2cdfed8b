"""Build the fusion layer a :class:`~fusionlab.config.FusionConfig` asks for."""

from __future__ import annotations

from fusionlab.config import FusionConfig
from fusionlab.fusion.attention import AttentionFusion
from fusionlab.fusion.average import AverageFusion
from fusionlab.fusion.base import FusionLayer
from fusionlab.fusion.weighted import WeightedFusion

FUSION_CLASSES: dict[str, type[FusionLayer]] = {
    "attention": AttentionFusion,
    "weighted": WeightedFusion,
    "average": AverageFusion,
}


def build_fusion(config: FusionConfig, hidden_size: int) -> FusionLayer:
    """One fusion layer over ``config.adapter_names`` for states of size ``hidden_size``."""
    num = len(config.adapter_names)
    common = {"dropout": config.fusion_dropout, "temperature": config.temperature}
    if config.fusion_method == "attention":
        return AttentionFusion(hidden_size, num, num_attention_heads=config.num_attention_heads, **common)
    if config.fusion_method == "weighted":
        return WeightedFusion(
            hidden_size,
            num,
            learnable_weights=config.learnable_weights,
            weight_initialization=config.weight_initialization,
            **common,
        )
    return AverageFusion(hidden_size, num, **common)
