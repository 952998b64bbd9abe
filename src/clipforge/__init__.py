"""clipforge: one toolkit for CLIP-style contrastive language-image models."""

from .api import get_tokenizer
from .models import (
    CLIP,
    CLIPConfig,
    create_model,
    get_model_config,
    list_models,
    save_model,
)
from .version import __version__

__all__ = [
    "CLIP",
    "CLIPConfig",
    "__version__",
    "create_model",
    "get_model_config",
    "get_tokenizer",
    "list_models",
    "save_model",
]
