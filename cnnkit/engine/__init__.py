"""Training: the loop, optimisers and schedules, checkpoints and run directories."""

from .trainer import Trainer, resume, train

__all__ = ["Trainer", "resume", "train"]
