"""Training: the trainer shared by every modality (DDP via torchrun, AMP, EMA, gradient
accumulation), atomic resumable checkpoints and fault handling."""

from .faults import CheckpointFallbackWarning, NonFiniteLossError, NonFiniteLossWarning, TrainingError, TrainingOOMError
from .trainer import TrainConfig, TrainResult, lr_factor, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "lr_factor",
    "TrainingError",
    "NonFiniteLossError",
    "TrainingOOMError",
    "NonFiniteLossWarning",
    "CheckpointFallbackWarning",
]
