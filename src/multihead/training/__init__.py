"""The trainer every task shares, with its optimiser, schedules, state and data-parallel helpers."""

from multihead.training.config import TrainingConfig
from multihead.training.optim import build_optimizer, parameter_groups
from multihead.training.schedules import build_scheduler, lr_multiplier
from multihead.training.trainer import Batch, Task, TrainData, Trainer, TrainResult

__all__ = [
    "Batch",
    "Task",
    "TrainData",
    "TrainResult",
    "Trainer",
    "TrainingConfig",
    "build_optimizer",
    "build_scheduler",
    "lr_multiplier",
    "parameter_groups",
]
