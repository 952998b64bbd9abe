"""The top-level convenience that ties a model to its tokenizer."""

from __future__ import annotations

from .models import CLIP
from .models.factory import ModelSpec, resolve_spec


def get_tokenizer(model: ModelSpec | CLIP = None, *, context_length: int | None = None):
    """The CLIP tokenizer sized for ``model`` (a name, config or model) or ``context_length``.

    The tokenizer is imported here, on first use: its text libraries (ftfy, regex) would
    otherwise add a quarter second to every ``import clipforge``.
    """
    from .tokenizer import DEFAULT_CONTEXT_LENGTH, Tokenizer

    if context_length is None and isinstance(model, CLIP):
        context_length = model.context_length
    elif context_length is None and model is not None:
        context_length = resolve_spec(model)[0].text_cfg.context_length
    return Tokenizer(context_length or DEFAULT_CONTEXT_LENGTH)
