"""Contrastive pretraining and fine-tuning: config, optimiser, step, checkpoints, the loop."""

from .batches import LoaderBatches, StepBatches, TensorBatches
from .config import TrainConfig, TrainConfigError, load_train_config
from .loop import RunResult, fit, train
from .optim import create_optimizer, lr_at
from .step import StepContext, train_step

__all__ = [
    "LoaderBatches",
    "RunResult",
    "StepBatches",
    "StepContext",
    "TensorBatches",
    "TrainConfig",
    "TrainConfigError",
    "create_optimizer",
    "fit",
    "load_train_config",
    "lr_at",
    "train",
    "train_step",
]
