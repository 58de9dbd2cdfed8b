"""Two-stage training: adapters per task, then fusion for a target task (see :mod:`.trainer`)."""

from fusionlab.training.loop import Reporter, TrainingCancelled
from fusionlab.training.trainer import FusionTrainer, TrainResult

__all__ = ["FusionTrainer", "Reporter", "TrainResult", "TrainingCancelled"]
