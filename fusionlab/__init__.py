"""fusionlab: Adapter Fusion (Pfeiffer et al., 2021) on Hugging Face encoders, to train, inspect and teach.

The public names are imported lazily: ``import fusionlab.runstore`` (the dashboard, the worker, the CLI's
``runs`` command) then costs milliseconds instead of loading torch and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusionlab.lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "AdapterConfig": "fusionlab.config",
    "FusionConfig": "fusionlab.config",
    "ModelConfig": "fusionlab.config",
    "TrainingConfig": "fusionlab.config",
    "AdapterManager": "fusionlab.adapters",
    "BottleneckAdapter": "fusionlab.adapters",
    "AttentionFusion": "fusionlab.fusion",
    "AverageFusion": "fusionlab.fusion",
    "FusionLayer": "fusionlab.fusion",
    "FusionOutput": "fusionlab.fusion",
    "WeightedFusion": "fusionlab.fusion",
    "FusionModel": "fusionlab.model",
    "FusionModelOutput": "fusionlab.model",
    "FusionTrainer": "fusionlab.training",
}

__all__ = [
    "AdapterConfig",
    "AdapterManager",
    "AttentionFusion",
    "AverageFusion",
    "BottleneckAdapter",
    "FusionConfig",
    "FusionLayer",
    "FusionModel",
    "FusionModelOutput",
    "FusionOutput",
    "FusionTrainer",
    "ModelConfig",
    "TrainingConfig",
    "WeightedFusion",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from fusionlab.adapters import AdapterManager, BottleneckAdapter
    from fusionlab.config import AdapterConfig, FusionConfig, ModelConfig, TrainingConfig
    from fusionlab.fusion import AttentionFusion, AverageFusion, FusionLayer, FusionOutput, WeightedFusion
    from fusionlab.model import FusionModel, FusionModelOutput
    from fusionlab.training import FusionTrainer


__getattr__ = lazy_getattr("fusionlab", _EXPORTS, globals())
