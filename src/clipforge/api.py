"""The top-level convenience that ties a model to its tokenizer."""

from __future__ import annotations

from .models import CLIP
from .models.factory import ModelSpec, resolve_spec


def get_tokenizer(model: ModelSpec | CLIP = None, *, context_length: int | None = None):
    """The CLIP tokenizer sized for ``model`` (a name, config or model) or ``context_length``.

    The tokenizer is imported here, on first use: its text libraries (ftfy, regex) would
    otherwise add a quarter second to every ``import clipforge``.
    """
    from .tokenizer import Tokenizer

    if context_length is None and model is not None:
        if isinstance(model, CLIP):
            context_length = model.context_length
        else:
            config, _ = resolve_spec(model)
            context_length = config.text_cfg.context_length
    return Tokenizer(context_length=context_length or 77)
