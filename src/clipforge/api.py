"""The top-level conveniences that tie a model to its preprocessing and tokenizer."""

from __future__ import annotations

import os
from typing import Any

from .models import CLIP, create_model
from .models.factory import ModelSpec, resolve_spec
from .tokenizer import Tokenizer
from .transforms import image_transform


def create_model_and_transforms(
    name_or_config: ModelSpec = None,
    pretrained: str | os.PathLike | None = None,
    **kwargs: Any,
):
    """``(model, train_transform, eval_transform)``, the transforms sized for the model."""
    model = create_model(name_or_config, pretrained, **kwargs)
    size = model.image_size
    return model, image_transform(size, is_train=True), image_transform(size, is_train=False)


def get_tokenizer(model: ModelSpec | CLIP = None, *, context_length: int | None = None):
    """The CLIP tokenizer sized for ``model`` (a name, config or model) or ``context_length``."""
    if context_length is None and model is not None:
        if isinstance(model, CLIP):
            context_length = model.context_length
        else:
            config, _ = resolve_spec(model)
            context_length = config.text_cfg.context_length
    return Tokenizer(context_length=context_length or 77)
