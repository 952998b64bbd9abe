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
    "create_model_and_transforms",
    "get_model_config",
    "get_tokenizer",
    "list_models",
    "save_model",
]


def __getattr__(name: str):
    # Tokenizer and transforms load their own dependencies; import them only when asked.
    if name in ("create_model_and_transforms", "get_tokenizer"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'clipforge' has no attribute {name!r}")
