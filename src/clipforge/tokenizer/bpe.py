"""OpenAI CLIP's BPE tokenizer, id for id, fast enough to run inside the data loader.

Pretrained CLIP text towers only work with the exact ids of OpenAI's ``SimpleTokenizer``, so
every step here reproduces it: clean the text (:func:`clean_text`), split it into pieces with
CLIP's regex, map each piece's UTF-8 bytes to byte symbols, apply the BPE merges with
``</w>`` ending the word, and frame the ids as ``[SOT] + ids + [EOT]`` padded with 0.

Token ids follow the layout fixed by CLIP's released weights: ids 0..255 are the 256 byte
symbols in code point order (so the printable bytes come first, not byte order), 256..511 the
same symbols ending a word (suffix ``</w>``), then one id per merge in merge order, then
``<start_of_text>`` (49406) and ``<end_of_text>`` (49407). Changing any of this would
silently scramble every pretrained text tower, so :func:`load_vocab` checks the counts.

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

import gzip
import html
import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from importlib import resources

import ftfy
import numpy as np
import regex
import torch
from tokenizers.models import BPE

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
END_OF_WORD = "</w>"
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
SOT_TOKEN_ID = 49406
EOT_TOKEN_ID = 49407
PAD_TOKEN_ID = 0
VOCAB_SIZE = 49408
# The vocab file holds more merges than CLIP uses; CLIP keeps the first ones that fill the
# vocabulary up to its special tokens.
NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2
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


def byte_symbols() -> tuple[str, ...]:
    """The printable character standing for each byte value (index = byte), as in GPT-2.

    BPE works on strings, and the merges file cannot hold spaces or control characters, so
    every byte gets a visible stand-in: bytes that already print as a Latin-1 character keep
    it, the others take the code points from U+0100 upward in byte order.
    """
    printable = set(
        itertools.chain(range(ord("!"), ord("~") + 1), range(0xA1, 0xAC + 1), range(0xAE, 0xFF + 1))
    )
    spare = itertools.count(256)
    return tuple(chr(byte if byte in printable else next(spare)) for byte in range(256))


@dataclass(frozen=True)
class BpeVocab:
    """Everything needed to map text pieces to CLIP ids and back.

    ``byte_table`` turns a piece's UTF-8 bytes, read as Latin-1, into byte symbols with
    ``str.translate``; ``symbol_table`` is its inverse. ``model`` is the Rust BPE engine
    (``tokenizers``) configured with CLIP's merges and end-of-word suffix.
    """

    tokens: tuple[str, ...]
    merges: tuple[tuple[str, str], ...]
    byte_table: dict[int, str]
    symbol_table: dict[int, int]
    model: BPE


def _read_merges() -> list[tuple[str, str]]:
    """The first NUM_MERGES merge rules of the packaged vocab file (after its header line).

    Only the head of the file is decompressed (the file holds over 260k rules), which keeps
    loading in the tens of milliseconds.
    """
    source = resources.files(__package__).joinpath(VOCAB_FILE)
    head = b""
    with source.open("rb") as raw, gzip.GzipFile(fileobj=raw) as stream:
        while head.count(b"\n") <= NUM_MERGES:
            block = stream.read(1 << 18)
            if not block:
                break
            head += block
    lines = head.decode("utf-8").split("\n", NUM_MERGES + 1)[1 : NUM_MERGES + 1]
    symbols = " ".join(lines).split()
    if len(lines) != NUM_MERGES or len(symbols) != 2 * NUM_MERGES:
        raise ValueError(
            f"{VOCAB_FILE}: expected {NUM_MERGES} merge lines of two symbols each, "
            f"got {len(lines)} lines holding {len(symbols)} symbols"
        )
    return list(zip(symbols[0::2], symbols[1::2], strict=True))


@lru_cache(maxsize=1)
def load_vocab() -> BpeVocab:
    """Build the CLIP vocabulary once per process; every Tokenizer shares the result."""
    symbols = byte_symbols()
    merges = _read_merges()
    base = tuple(sorted(symbols))
    tokens = (
        base
        + tuple(symbol + END_OF_WORD for symbol in base)
        + tuple(first + second for first, second in merges)
        + (SOT_TOKEN, EOT_TOKEN)
    )
    ids = {token: index for index, token in enumerate(tokens)}
    if len(ids) != VOCAB_SIZE:
        raise ValueError(f"{VOCAB_FILE}: expected {VOCAB_SIZE} distinct tokens, got {len(ids)}")
    # ignore_merges=False: a word found whole in the vocab must still be built by merges,
    # as CLIP does (the shortcut can pick a different split).
    model = BPE(vocab=ids, merges=merges, end_of_word_suffix=END_OF_WORD, ignore_merges=False)
    return BpeVocab(
        tokens=tokens,
        merges=tuple(merges),
        byte_table=dict(enumerate(symbols)),
        symbol_table={ord(symbol): byte for byte, symbol in enumerate(symbols)},
        model=model,
    )


def whole_words() -> tuple[str, ...]:
    """The vocabulary's tokens that end a word, without ``</w>``, in id order."""
    cut = len(END_OF_WORD)
    return tuple(token[:-cut] for token in load_vocab().tokens if token.endswith(END_OF_WORD))


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
