"""The OpenAI CLIP byte-level BPE vocabulary, read from package data once per process.

Token ids follow the layout fixed by CLIP's released weights: ids 0..255 are the 256 byte
symbols in code point order (so the printable bytes come first, not byte order), 256..511 the
same symbols ending a word (suffix ``</w>``), then one id per merge in merge order, then
``<start_of_text>`` (49406) and ``<end_of_text>`` (49407). Changing any of this would
silently scramble every pretrained text tower, so the loader checks the counts.
"""

from __future__ import annotations

import gzip
import itertools
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

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
