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


def __getattr__(name: str):
    # The tokenizer loads its own dependencies; import it only when asked.
    if name == "get_tokenizer":
        from .api import get_tokenizer

        return get_tokenizer
    raise AttributeError(f"module 'clipforge' has no attribute {name!r}")
