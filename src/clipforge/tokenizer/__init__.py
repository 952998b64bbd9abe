"""OpenAI CLIP's byte-level BPE tokenizer: exact ids, fast batch encoding.

>>> tok = Tokenizer(context_length=77)
>>> tok(["a photo of a cat"]).shape
torch.Size([1, 77])
"""

from __future__ import annotations

from ..models import CLIP
from ..models.factory import ModelSpec, resolve_spec
from .bpe import (
    DEFAULT_CONTEXT_LENGTH,
    EOT_TOKEN_ID,
    PAD_TOKEN_ID,
    SOT_TOKEN_ID,
    VOCAB_SIZE,
    Tokenizer,
    whole_words,
)

__all__ = [
    "DEFAULT_CONTEXT_LENGTH",
    "EOT_TOKEN_ID",
    "PAD_TOKEN_ID",
    "SOT_TOKEN_ID",
    "VOCAB_SIZE",
    "Tokenizer",
    "get_tokenizer",
    "whole_words",
]


def get_tokenizer(
    model: ModelSpec | CLIP = None, *, context_length: int | None = None
) -> Tokenizer:
    """The CLIP tokenizer sized for ``model`` (a name, config or model) or ``context_length``."""
    if context_length is None and isinstance(model, CLIP):
        context_length = model.context_length
    elif context_length is None and model is not None:
        context_length = resolve_spec(model)[0].text_cfg.context_length
    return Tokenizer(context_length or DEFAULT_CONTEXT_LENGTH)
