"""Training: the trainer shared by every modality, EMA, checkpoints for resuming."""
from .trainer import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
