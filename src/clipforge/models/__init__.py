"""CLIP model architectures, configs, and weight loading/saving/conversion."""

from .clip import CLIP
from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig, get_model_config, list_models
from .factory import create_model
from .fit import load_weights
from .formats import CheckpointError, read_checkpoint
from .hub import PretrainedNotAvailableError
from .savers import save_hf, save_model, save_openclip

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
    "load_weights",
    "read_checkpoint",
    "save_hf",
    "save_model",
    "save_openclip",
]
