"""HuBERT pretraining: config, LR schedule, checkpoints and the distributed trainer."""

from mhubert.train.config import TrainConfig

__all__ = ["TrainConfig"]
