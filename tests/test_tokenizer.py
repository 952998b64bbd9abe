"""Tests of clipforge.tokenizer: exact OpenAI CLIP ids, framing, fast-path soundness, errors.

Reference ids come from OpenCLIP's SimpleTokenizer (tests/fixtures/tokenizer_cases.json and
a few golden cases below). The speed-ups are each checked against the plain computation they
replace: the ASCII cleaning fast path against full cleaning, word-by-word pre-tokenization
against whole-text pre-tokenization, and the Rust BPE model against a Python merge loop.
"""

from __future__ import annotations

import json
import pickle
import string
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import regex
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipforge.tokenizer import (
    EOT_TOKEN_ID,
    PAD_TOKEN_ID,
    SOT_TOKEN_ID,
    VOCAB_SIZE,
    Tokenizer,
)
from clipforge.tokenizer.bpe import (
    _PIECE_PATTERN,
    END_OF_WORD,
    _WordCache,
    byte_symbols,
    clean_text,
    encode_word,
    full_clean_text,
    load_vocab,
    needs_full_cleaning,
)

CASES = json.loads((Path(__file__).parent / "fixtures" / "tokenizer_cases.json").read_text())[
    "cases"
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def framed(bpe: list[int], length: int) -> list[int]:
    """The CLIP row written out: SOT + ids + EOT, cut to length with EOT last, zero padded."""
    row = [SOT_TOKEN_ID, *bpe, EOT_TOKEN_ID]
    if len(row) > length:
        row = row[:length]
        row[-1] = EOT_TOKEN_ID
    return row + [PAD_TOKEN_ID] * (length - len(row))


# --- exactness against OpenCLIP -----------------------------------------------------------


def test_fixture_has_all_cases() -> None:
    assert len(CASES) == 297


@pytest.mark.parametrize("case", CASES, ids=range(len(CASES)))
def test_fixture_case(tok: Tokenizer, case: dict) -> None:
    assert tok.encode(case["text"]) == case["bpe"]
    assert tok(case["text"]).tolist() == [case["ids_77"]]
    assert tok(case["text"], context_length=248).tolist() == [case["ids_248"]]


@pytest.mark.parametrize("length", [77, 248])
def test_fixture_as_one_batch(length: int) -> None:
    # A fresh tokenizer (empty word cache) and rows of mixed lengths, some truncated.
    ids = Tokenizer(context_length=length)([case["text"] for case in CASES])
    assert ids.dtype == torch.long
    assert ids.tolist() == [case[f"ids_{length}"] for case in CASES]


@pytest.mark.parametrize(
    ("text", "bpe"),
    [
        # Special tokens get their ids only when the regex isolates them exactly...
        ("a <start_of_text> b <END_OF_TEXT>", [320, 49406, 321, 49407]),
        # ...not when punctuation runs into them, nor for a case-folded look-alike.
        ("x!<start_of_text>", [343, 0, 283, 1572, 318, 539, 318, 4160, 285]),
        ("<\u017ftart_of_text>", [27, 129, 123, 16707, 62, 684, 62, 18169, 285]),
        # ftfy deletes \x0b and \x1c rather than treating them as spaces.
        ("tab\x0bvert a\x1cb", [2648, 11742, 3937]),
        # ftfy and the two html.unescape calls together peel three layers of escaping.
        ("&amp;amp;lt;", [283]),
        ("wow!? hi!!", [2781, 6004, 1883, 748]),
    ],
)
def test_golden_edge_cases(tok: Tokenizer, text: str, bpe: list[int]) -> None:
    assert tok.encode(text) == bpe


# --- framing, truncation, context lengths ---------------------------------------------------


@pytest.mark.parametrize("length", [2, 3, 5, 77, 248])
def test_rows_follow_the_framing_rule(length: int) -> None:
    texts = ["", "a", "a photo of a cat", "word " * 100, "猫の写真 and a dog"]
    tok = Tokenizer(context_length=length)
    expected = [framed(tok.encode(text), length) for text in texts]
    assert tok(texts).tolist() == expected
    assert [tok(text).tolist()[0] for text in texts] == expected


def test_context_length_2_keeps_only_start_and_end(tok: Tokenizer) -> None:
    assert tok("a long caption", context_length=2).tolist() == [[SOT_TOKEN_ID, EOT_TOKEN_ID]]


def test_call_override_does_not_change_instance(tok: Tokenizer) -> None:
    assert tok("a cat", context_length=5).shape == (1, 5)
    assert tok.context_length == 77
    assert tok("a cat").shape == (1, 77)


def test_shapes_and_inputs(tok: Tokenizer) -> None:
    assert tok([]).shape == (0, 77)
    assert tok(("a", "b")).shape == (2, 77)
    assert torch.equal(tok("a cat"), tok(["a cat"]))


def test_attributes() -> None:
    tok = Tokenizer(context_length=248)
    assert tok.context_length == 248
    assert tok.vocab_size == VOCAB_SIZE == 49408
    assert (tok.sot_token_id, tok.eot_token_id, tok.pad_token_id) == (49406, 49407, 0)
    assert Tokenizer().context_length == 77


def test_pickle_round_trip_keeps_settings() -> None:
    tok = Tokenizer(context_length=13)
    tok("warm the word cache")
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.context_length == 13
    assert len(pickle.dumps(tok)) < 200
    assert torch.equal(clone("a photo of a dog"), tok("a photo of a dog"))


# --- decode -------------------------------------------------------------------------------


def test_decode_round_trip(tok: Tokenizer) -> None:
    text = "a photo of a large red star on the left of a blue square"
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok(text)[0]) == text
    assert tok.decode(tok.encode("Café   CRÈME 猫")) == "café crème 猫"


def test_decode_keeps_inner_zero_ids(tok: Tokenizer) -> None:
    # Id 0 is the symbol "!": inside a sequence it is text, only trailing zeros are padding.
    assert tok.encode("x!<") == [343, 0, 283]  # "x</w>", "!", "<</w>"
    assert tok.decode(tok("x!<")[0]) == "x !<"


def test_decode_rejects_unknown_ids(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match=r"ids\[1\] = 49408"):
        tok.decode([320, VOCAB_SIZE])
    with pytest.raises(ValueError, match=r"ids\[0\] = -1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match=r"ids\[0\] is Tensor"):
        tok.decode(tok(["a", "b"]))


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 0, -3])
def test_too_short_context_length(length: int) -> None:
    with pytest.raises(ValueError, match=f"context_length={length}"):
        Tokenizer(context_length=length)
    with pytest.raises(ValueError, match=f"context_length={length}"):
        Tokenizer()("a", context_length=length)


def test_non_int_context_length() -> None:
    with pytest.raises(TypeError, match="float"):
        Tokenizer(context_length=7.5)


def test_non_string_element_names_index_and_type(tok: Tokenizer) -> None:
    with pytest.raises(TypeError, match=r"texts\[2\] is int"):
        tok(["a", "b", 3])
    with pytest.raises(TypeError, match="NoneType"):
        tok(None)
    with pytest.raises(TypeError, match="bytes"):
        tok.encode(b"a cat")


# --- the speed-ups are exact ----------------------------------------------------------------


def joined(*fragments: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Strings made of up to 16 fragments, each drawn from one of ``fragments``."""
    return st.lists(st.one_of(*fragments), max_size=16).map("".join)


# Printable ASCII without "&", plus the whitespace controls ftfy keeps: the fast path's domain.
PLAIN_ASCII = st.text(alphabet=string.printable.replace("&", "").replace("\x0b", ""), max_size=60)
# Any ASCII (controls included) mixed with what could fool a careless fast path.
ASCII_HEAVY = joined(
    st.characters(max_codepoint=0x7F),
    st.sampled_from(["&amp;", "&#39;", "&lt;", "\x85", "\xa0", "\u2028", "ﬁ", "é", "’"]),
)


@settings(max_examples=300, deadline=None)
@given(PLAIN_ASCII)
def test_plain_ascii_takes_the_fast_path_exactly(text: str) -> None:
    assert not needs_full_cleaning(text)
    assert clean_text(text) == full_clean_text(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ASCII_HEAVY, st.text(max_size=40)))
def test_fast_path_never_changes_cleaning(text: str) -> None:
    assert clean_text(text) == full_clean_text(text)


def test_fast_path_refuses_what_ftfy_or_html_could_change() -> None:
    for text in ["a &amp; b", "a\x0bb", "a\x1cb", "a\x00b", "\x1b[31mred", "café", "ﬁsh"]:
        assert needs_full_cleaning(text), text


def test_regex_whitespace_is_removed_by_cleaning() -> None:
    # Word-by-word pre-tokenization relies on cleaned text holding no whitespace but " ".
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    regex_spaces = set(regex.findall(r"\s", everything))
    assert all(char.isspace() for char in regex_spaces)
    # Lowercasing (done after the whitespace collapse) creates no new whitespace: spaces
    # lower to themselves, so any extra one would have come from a non-space character.
    assert sum(map(str.isspace, everything.lower())) == sum(map(str.isspace, everything))


@settings(max_examples=300, deadline=None)
@given(
    joined(
        st.characters(),
        st.sampled_from(["<start_of_text>", "<end_of_text>", "'s", "'LL", " ", "\t", "1", "&"]),
    )
)
def test_pieces_of_words_are_pieces_of_text(text: str) -> None:
    cleaned = full_clean_text(text)
    by_word = [piece for word in cleaned.split() for piece in _PIECE_PATTERN.findall(word)]
    assert by_word == _PIECE_PATTERN.findall(cleaned)


def python_bpe(symbols: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE: merge every occurrence of the lowest-ranked adjacent pair until none is left."""
    parts = [*symbols[:-1], symbols[-1] + END_OF_WORD]
    while len(parts) > 1:
        best = min(pairwise(parts), key=lambda pair: ranks.get(pair, len(ranks)))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


@pytest.fixture(scope="module")
def ranks() -> dict[tuple[str, str], int]:
    return {pair: rank for rank, pair in enumerate(load_vocab().merges)}


@pytest.fixture(scope="module")
def token_ids() -> dict[str, int]:
    return {token: index for index, token in enumerate(load_vocab().tokens)}


def test_merges_never_precede_their_inputs(ranks: dict[tuple[str, str], int]) -> None:
    # Why leftmost-lowest-rank-first (Rust) equals merge-all-occurrences (CLIP) on this file.
    created_by = {first + second: rank for (first, second), rank in ranks.items()}
    for (first, second), rank in ranks.items():
        assert created_by.get(first, -1) < rank and created_by.get(second, -1) < rank


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["ing", "tion", "the", "er", "photo", "s", "a", "e", "aa", "ll", "!"]),
            st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=3),
            # Lone surrogates (U+D800-DFFF) have no UTF-8 bytes, so no text holds them.
            st.characters(min_codepoint=0xA0, exclude_categories=("Cs",)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_rust_bpe_matches_python_merge_loop(
    ranks: dict[tuple[str, str], int], token_ids: dict[str, int], parts: list[str]
) -> None:
    vocab = load_vocab()
    symbols = "".join(parts).encode("utf-8").decode("latin-1").translate(vocab.byte_table)
    expected = [token_ids[token] for token in python_bpe(symbols, ranks)]
    assert [token.id for token in vocab.model.tokenize(symbols)] == expected


def test_byte_symbols_are_distinct_and_printable() -> None:
    symbols = byte_symbols()
    assert len(set(symbols)) == 256
    assert all(symbol.isprintable() and not symbol.isspace() for symbol in symbols)
    assert symbols[ord("a")] == "a"


def test_vocab_is_loaded_once() -> None:
    assert load_vocab() is load_vocab()
    assert len(load_vocab().tokens) == VOCAB_SIZE


def test_word_cache_stays_bounded() -> None:
    vocab = load_vocab()
    cache = _WordCache(lambda word: encode_word(vocab, word), max_size=2)
    words = ["photo", "of", "a", "cat", "photo"]
    assert [cache[word] for word in words] == [encode_word(vocab, word) for word in words]
    assert len(cache) <= 2


def test_import_clipforge_loads_the_text_libraries_only_for_get_tokenizer() -> None:
    code = (
        "import sys, clipforge\n"
        "libraries = ('ftfy', 'regex', 'tokenizers')\n"
        "print(sorted(set(libraries) & set(sys.modules)))\n"
        "print(clipforge.get_tokenizer('ViT-B-32').context_length)\n"
        "print(sorted(set(libraries) & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:3] == ["[]", "77", "['ftfy', 'regex', 'tokenizers']"]
