"""Random draws that give the same values on every Python version, and cost little.

The shapes world draws a few dozen numbers per sample, so the generator's set-up and per-call
cost dominate: ``random.Random`` seeds in ~6 us and draws in ~0.1 us, where a numpy Generator
seeded from a tuple takes ~30 us and ~1 us. Python guarantees only ``Random.random()`` (with a
str, int or bytes seed) to repeat across versions; ``randrange``, ``choice`` and ``shuffle`` may
change, so every draw here is built on ``random()`` alone.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def index(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n)."""
    return int(rng.random() * n)


def pick(rng: random.Random, options: Sequence[T]) -> T:
    """A uniform choice from ``options``."""
    return options[int(rng.random() * len(options))]


def take(rng: random.Random, options: Sequence[T], k: int) -> list[T]:
    """``k`` distinct elements of ``options`` in random order."""
    pool = list(options)
    return [pool.pop(index(rng, len(pool))) for _ in range(k)]


def uniform(rng: random.Random, low: float, high: float) -> float:
    """A uniform float in [low, high)."""
    return low + (high - low) * rng.random()


def weighted(rng: random.Random, cumulative: Sequence[float]) -> int:
    """An index drawn with the probabilities whose running sums are ``cumulative``."""
    return min(bisect.bisect(cumulative, rng.random()), len(cumulative) - 1)
