"""Contrastive pretraining and fine-tuning: config, optimiser, state, step, loop, launcher."""

from .batches import LoaderBatches, StepBatches, TensorBatches
from .config import TrainConfig, TrainConfigError, load_train_config
from .launch import fit
from .loop import RunResult, train
from .optim import create_optimizer, lr_at
from .state import TrainState, load_checkpoint, save_checkpoint
from .step import StepContext, train_step

__all__ = [
    "LoaderBatches",
    "RunResult",
    "StepBatches",
    "StepContext",
    "TensorBatches",
    "TrainConfig",
    "TrainConfigError",
    "TrainState",
    "create_optimizer",
    "fit",
    "load_checkpoint",
    "load_train_config",
    "lr_at",
    "save_checkpoint",
    "train",
    "train_step",
]
