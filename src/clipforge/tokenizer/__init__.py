"""OpenAI CLIP's byte-level BPE tokenizer: exact ids, fast batch encoding.

>>> tok = Tokenizer(context_length=77)
>>> tok(["a photo of a cat"]).shape
torch.Size([1, 77])
"""

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
    "whole_words",
]
