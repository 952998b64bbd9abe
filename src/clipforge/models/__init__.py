"""CLIP model architectures, configs, and weight loading/saving/conversion."""

from .checkpoint import (
    CheckpointError,
    PretrainedNotAvailableError,
    read_checkpoint,
    save_hf,
    save_model,
    save_openclip,
)
from .clip import CLIP
from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig, get_model_config, list_models
from .factory import create_model

__all__ = [
    "CLIP",
    "CLIPConfig",
    "CheckpointError",
    "ConfigError",
    "PretrainedNotAvailableError",
    "TextConfig",
    "VisionConfig",
    "create_model",
    "get_model_config",
    "list_models",
    "read_checkpoint",
    "save_hf",
    "save_model",
    "save_openclip",
]
