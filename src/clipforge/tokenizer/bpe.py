"""OpenAI CLIP's BPE tokenizer, id for id, fast enough to run inside the data loader.

Pretrained CLIP text towers only work with the exact ids of OpenAI's ``SimpleTokenizer``, so
every step here reproduces it: clean the text (:func:`clean_text`), split it into pieces with
CLIP's regex, map each piece's UTF-8 bytes to byte symbols, apply the BPE merges with
``</w>`` ending the word, and frame the ids as ``[SOT] + ids + [EOT]`` padded with 0.

Speed comes from three things that do not change the ids:

* cleaning skips ftfy and HTML unescaping for printable ASCII text without ``&``: ftfy alone
  costs tens of microseconds per caption, more than all the rest, yet it cannot change such
  text (no mojibake, ligatures, wide, curly or control characters), nor can HTML unescaping
  without ``&``; what remains is whitespace collapse and lowercasing (the tests check this
  equivalence on random strings);
* no regex alternative matches a space and cleaned text holds no other whitespace, so the
  pieces of a text are the pieces of its space-separated words taken in order, and the ids
  of each distinct word are computed once and cached;
* the merges run in the Rust ``tokenizers`` BPE model. It applies the lowest-ranked merge
  first, leftmost first among equals, which gives the same result as CLIP's
  merge-every-occurrence loop because no merge in the file ranks before a merge that
  creates one of its two symbols (checked by the tests against a plain Python loop).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial

import ftfy
import numpy as np
import regex
import torch

from .vocab import (
    EOT_TOKEN,
    EOT_TOKEN_ID,
    PAD_TOKEN_ID,
    SOT_TOKEN,
    SOT_TOKEN_ID,
    VOCAB_SIZE,
    BpeVocab,
    load_vocab,
)

DEFAULT_CONTEXT_LENGTH = 77
# Distinct words kept per tokenizer before the cache is emptied; bounds memory on
# open-ended caption streams (an entry costs a few hundred bytes).
WORD_CACHE_SIZE = 100_000

# CLIP's pre-tokenizer. IGNORECASE only matters for the special tokens: cleaned text is
# lowercase already, and a special token must match exactly to get its id (otherwise it is
# ordinary text run through BPE, as in the reference).
_PIECE_PATTERN = regex.compile(
    rf"{SOT_TOKEN}|{EOT_TOKEN}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
    regex.IGNORECASE,
)
_SPECIAL_IDS = {SOT_TOKEN: SOT_TOKEN_ID, EOT_TOKEN: EOT_TOKEN_ID}
_NON_TEXT_IDS = frozenset(_SPECIAL_IDS.values())
# Printable ASCII except '&' (0x26), plus the whitespace controls that ftfy keeps (\t, \n, \f)
# or turns into a newline (\r). Every other control character is deleted by ftfy, so text
# holding one needs the full pipeline.
_PLAIN_ASCII = re.compile(r"[\t\n\r\x0c -%'-~]*")


def needs_full_cleaning(text: str) -> bool:
    """Whether ``text`` may be changed by ftfy or HTML unescaping (so the fast path is unsafe)."""
    return _PLAIN_ASCII.fullmatch(text) is None


def full_clean_text(text: str) -> str:
    """CLIP's reference cleaning: ftfy, HTML unescape twice, whitespace collapse, lowercase.

    Whitespace is what ``str.split`` splits on. OpenAI's original used the regex ``\\s+``;
    the two differ only on U+001C..U+001F, which ftfy deletes and ``html.unescape`` never
    produces, so both give the same text.
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


def clean_text(text: str) -> str:
    """Clean ``text`` as CLIP does, skipping ftfy and HTML unescaping when they cannot apply."""
    if needs_full_cleaning(text):
        return full_clean_text(text)
    return " ".join(text.split()).lower()


def encode_word(vocab: BpeVocab, word: str) -> tuple[int, ...]:
    """BPE ids of one whitespace-free stretch of cleaned text."""
    ids: list[int] = []
    for piece in _PIECE_PATTERN.findall(word):
        special = _SPECIAL_IDS.get(piece)
        if special is not None:
            ids.append(special)
            continue
        symbols = piece.encode("utf-8").decode("latin-1").translate(vocab.byte_table)
        ids.extend(token.id for token in vocab.model.tokenize(symbols))
    return tuple(ids)


class _WordCache(dict[str, tuple[int, ...]]):
    """Word -> ids, computed on first lookup; emptied when full so memory stays bounded."""

    def __init__(self, encode: Callable[[str], tuple[int, ...]], max_size: int) -> None:
        super().__init__()
        self._encode = encode
        self._max_size = max_size

    def __missing__(self, word: str) -> tuple[int, ...]:
        ids = self._encode(word)
        if len(self) >= self._max_size:
            self.clear()
        self[word] = ids
        return ids


def _checked_context_length(context_length: int) -> int:
    """Reject lengths that cannot hold the start and end tokens."""
    if isinstance(context_length, bool) or not isinstance(context_length, int):
        raise TypeError(f"context_length must be an int, got {type(context_length).__name__}")
    if context_length < 2:
        raise ValueError(
            f"context_length={context_length} cannot hold the start and end tokens (need >= 2)"
        )
    return context_length


class Tokenizer:
    """Text -> CLIP token ids, identical to OpenAI's / OpenCLIP's ``SimpleTokenizer``.

    Calling it returns a ``(N, context_length)`` LongTensor: each row is
    ``[SOT] + bpe_ids + [EOT]`` padded with ``PAD_TOKEN_ID``; a text too long for the row
    keeps its first ``context_length - 2`` BPE ids and still ends with EOT. The vocabulary
    is shared by all instances in a process; each instance keeps its own word cache.
    """

    vocab_size: int = VOCAB_SIZE
    sot_token_id: int = SOT_TOKEN_ID
    eot_token_id: int = EOT_TOKEN_ID
    pad_token_id: int = PAD_TOKEN_ID

    def __init__(self, context_length: int = DEFAULT_CONTEXT_LENGTH) -> None:
        self.context_length = _checked_context_length(context_length)
        self._vocab = load_vocab()
        self._words = _WordCache(partial(encode_word, self._vocab), WORD_CACHE_SIZE)

    def __reduce__(self) -> tuple[type[Tokenizer], tuple[int]]:
        """Pickle only the settings: a DataLoader worker rebuilds (and caches) the vocabulary
        itself instead of receiving megabytes of tables and a word cache."""
        return (Tokenizer, (self.context_length,))

    def __repr__(self) -> str:
        return f"Tokenizer(context_length={self.context_length})"

    def _append_ids(self, ids: list[int], text: str) -> None:
        """Append the BPE ids of ``text`` to ``ids`` (in place, to avoid per-text lists)."""
        words = self._words
        for word in clean_text(text).split():
            ids += words[word]

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text``: no start/end tokens, no truncation."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        ids: list[int] = []
        self._append_ids(ids, text)
        return ids

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None
    ) -> torch.Tensor:
        """Tokenize one text or a batch into a ``(N, L)`` LongTensor, ``L`` = context length.

        ``context_length`` overrides the instance's length for this call (e.g. 248 for
        Long-CLIP). A single string gives ``N = 1``.
        """
        length = _checked_context_length(
            self.context_length if context_length is None else context_length
        )
        if isinstance(texts, str):
            texts = (texts,)
        elif not isinstance(texts, Iterable):
            raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
        rows = [self._framed(index, text, length) for index, text in enumerate(texts)]
        # Writing rows into a numpy array is several times faster than torch.tensor on Python
        # lists, both for one text and for batches of hundreds.
        out = np.full((len(rows), length), PAD_TOKEN_ID, dtype=np.int64)  # (N, L)
        for index, row in enumerate(rows):
            out[index, : len(row)] = row
        return torch.from_numpy(out)

    def _framed(self, index: int, text: str, length: int) -> list[int]:
        """``[SOT] + ids + [EOT]`` of ``texts[index]``, cut to ``length`` keeping EOT last."""
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str")
        row = [SOT_TOKEN_ID]
        self._append_ids(row, text)
        del row[length - 1 :]
        row.append(EOT_TOKEN_ID)
        return row

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; start/end tokens and trailing padding are dropped.

        Only the trailing run of ``PAD_TOKEN_ID`` is padding: id 0 is also the byte symbol
        ``!``, which a BPE sequence may hold mid-word but never last (a word always ends with
        a ``</w>`` token), so zeros inside the sequence are kept as text.
        """
        values = []
        for position, token_id in enumerate(ids):
            try:
                value = int(token_id)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"ids[{position}] is {type(token_id).__name__}, expected one int "
                    "(decode takes one sequence, not a batch)"
                ) from None
            if not 0 <= value < VOCAB_SIZE:
                raise ValueError(f"ids[{position}] = {value} is outside [0, {VOCAB_SIZE})")
            values.append(value)
        while values and values[-1] == PAD_TOKEN_ID:
            values.pop()
        tokens = self._vocab.tokens
        symbols = "".join(tokens[token_id] for token_id in values if token_id not in _NON_TEXT_IDS)
        raw = symbols.translate(self._vocab.symbol_table).encode("latin-1")
        return raw.decode("utf-8", errors="replace").replace("</w>", " ").strip()
