"""WaffleCLIP's random descriptors: random words and random characters shared by all classes.

Roth et al., "Waffling around for Performance: Visual Classification with Random Words and
Broad Concepts" (ICCV 2023) replace DCLIP's GPT descriptors by random ones and score a class
by the mean similarity over its prompts, as DCLIP does. What we implement, following the
authors' ``waffle`` mode (``ExplainableML/WaffleCLIP``, ``waffle_tools.py``):

* ``pairs`` times, draw one *random-word* descriptor (``words`` random vocabulary words joined
  by spaces, each cut to ``word_length`` characters) and one *random-character* descriptor
  (``groups`` runs of ``group_length`` random characters joined by ``", "``);
* the sizes follow the class names (:func:`waffle_shape`): ``words`` = mean word count,
  rounded, at least 1; ``word_length`` = mean word length, rounded; ``groups`` = mean number
  of spaces, rounded, plus 1; characters = mean longest-word length, rounded up, then raised
  to the next multiple of ``groups`` that is strictly larger (their formula
  ``n += g - n % g``), split evenly over the groups;
* every class gets the same descriptors, each through DCLIP's "which is/has" rewrite, in the
  prompt ``"A photo of a {classname}, {descriptor}."`` (their default text around it).

Differences, on purpose: the word pool is the whole words of CLIP's own BPE vocabulary
(:func:`vocabulary_words`) rather than their pickled English word list; the character pool
defaults to lowercase letters and digits (theirs is the characters of the GPT descriptors of
the dataset); draws use ``random.Random(seed).random()``, whose output Python guarantees
across versions, so a seed gives the same descriptors everywhere.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import mean

from ..tokenizer import whole_words

WAFFLE_FORMAT = "A photo of a {classname}, {descriptor}."
DEFAULT_CHARACTERS = string.ascii_lowercase + string.digits
DEFAULT_PAIRS = 15
MIN_WORD_LENGTH = 3


@lru_cache(maxsize=1)
def vocabulary_words() -> tuple[str, ...]:
    """Whole words of the CLIP BPE vocabulary, in vocabulary order (about 32k).

    Those of :func:`~clipforge.tokenizer.whole_words` that are ASCII letters only and at least
    three long: numbers, punctuation and non-Latin scripts are left out.
    """
    return tuple(
        word
        for word in whole_words()
        if word.isascii() and word.isalpha() and len(word) >= MIN_WORD_LENGTH
    )


@dataclass(frozen=True)
class WaffleShape:
    """How long WaffleCLIP's random descriptors are for a set of class names."""

    words: int
    word_length: int
    groups: int
    group_length: int


def waffle_shape(classnames: Sequence[str]) -> WaffleShape:
    """Descriptor sizes from the class names' word counts and lengths (module docstring)."""
    if not classnames:
        raise ValueError("WaffleCLIP needs at least one class name")
    split = [name.split(" ") for name in classnames]
    words = max(round(mean(len(parts) for parts in split)), 1)
    word_length = max(round(mean(mean(len(part) for part in parts) for parts in split)), 1)
    groups = round(mean(name.count(" ") for name in classnames)) + 1
    characters = math.ceil(mean(max(len(part) for part in parts) for parts in split))
    characters += groups - characters % groups
    return WaffleShape(words, word_length, groups, characters // groups)


def waffle_descriptors(
    classnames: Sequence[str],
    *,
    seed: int,
    pairs: int = DEFAULT_PAIRS,
    words: Sequence[str] | None = None,
    characters: str = DEFAULT_CHARACTERS,
) -> list[str]:
    """``2 * pairs`` random descriptors (word, characters, word, ...), the same for a seed.

    ``words`` replaces the vocabulary word pool; ``characters`` the character pool.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    if not characters:
        raise ValueError("the character pool is empty")
    shape = waffle_shape(classnames)
    pool = [word[: shape.word_length] for word in (vocabulary_words() if words is None else words)]
    if not pool:
        raise ValueError("the word pool is empty")
    rng = random.Random(seed)
    out = []
    for _ in range(pairs):
        out.append(" ".join(_draw(rng, pool) for _ in range(shape.words)))
        runs = (
            "".join(_draw(rng, characters) for _ in range(shape.group_length))
            for _ in range(shape.groups)
        )
        out.append(", ".join(runs))
    return out


def _draw(rng: random.Random, items: Sequence[str]) -> str:
    """One uniform pick from ``rng.random()`` only (its output is stable across Pythons)."""
    return items[min(int(rng.random() * len(items)), len(items) - 1)]
