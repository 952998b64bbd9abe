"""clipforge: one toolkit for CLIP-style contrastive language-image models."""

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


def __getattr__(name: str) -> object:
    """``get_tokenizer``, imported on first use: its text libraries (ftfy, regex, tokenizers)
    would otherwise add a quarter second to every ``import clipforge``."""
    if name == "get_tokenizer":
        from .tokenizer import get_tokenizer

        return get_tokenizer
    raise AttributeError(f"module 'clipforge' has no attribute {name!r}")
