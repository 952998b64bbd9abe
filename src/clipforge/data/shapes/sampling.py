"""Drawing random scenes, one function per kind of image.

The functions take a ``random.Random`` rather than a seed so that :class:`ShapesWorld` alone
decides how a sample's seed is derived; given the same generator state they always return the
same scene. Split membership is enforced here: train and val scenes use only ``TRAIN_PAIRS``, and a
heldout scene always has a held-out pair in its first object.

Every draw is built on ``Random.random()`` alone (``index``, ``pick``, ``take``, ``uniform``,
``weighted``): Python guarantees only that (with a str, int or bytes seed) to repeat across
versions, while ``randrange``, ``choice`` and ``shuffle`` may change. ``random.Random`` also
costs little here, where a sample takes a few dozen draws: it seeds in ~6 us and draws in
~0.1 us, where a numpy Generator seeded from a tuple takes ~30 us and ~1 us.
"""

from __future__ import annotations

import bisect
import colorsys
import itertools
import math
import random
from collections.abc import Sequence
from functools import cache
from typing import TypeVar

from clipforge.data.shapes.scene import BACKGROUND_KINDS, RGB, Background, Scene, SceneObject
from clipforge.data.shapes.vocab import (
    COLOUR_RGB,
    POSITIONS,
    SIZES,
    TRAIN_PAIRS,
    relation,
    split_pairs,
)

N_OBJECTS_CUMULATIVE = tuple(itertools.accumulate((0.4, 0.35, 0.25)))  # P(1, 2, 3 objects)
DUPLICATE_P = 0.3  # chance a later object repeats the first one's pair, for counting captions
# P(plain, noise, stripes, gradient), as running sums.
BACKGROUND_CUMULATIVE = tuple(itertools.accumulate((0.4, 0.2, 0.2, 0.2)))
MAX_ROTATION = 15.0  # degrees; larger turns would make a square read as a diamond
MAX_OFFSET = 0.01  # fraction of the side; keeps neighbouring large objects apart
MAX_SHADE = 12  # per-channel shift of an object's named colour
# Least RGB distance between any background pixel and any object colour. A muted background
# is then never mistaken for (or hides) an object, e.g. no purple star on a grey-purple field.
MIN_BACKGROUND_DISTANCE = 110.0
BACKGROUND_TRIES = 64

# Position pairs a relation caption can name, e.g. ("left", "center") -> "left of".
ALIGNED_POSITIONS: tuple[tuple[str, str], ...] = tuple(
    (a, b) for a in POSITIONS for b in POSITIONS if relation(a, b) is not None
)
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


def sample_scene(rng: random.Random, split: str) -> Scene:
    """An image-text scene of ``split``: 1-3 objects in distinct slots, sometimes repeating a
    pair so that counting captions ("two blue squares") occur."""
    n_objects = weighted(rng, N_OBJECTS_CUMULATIVE) + 1
    positions = take(rng, POSITIONS, n_objects)
    first_pool = split_pairs(split)
    pairs = [pick(rng, first_pool)]
    sizes = [pick(rng, SIZES)]
    for _ in range(1, n_objects):
        if rng.random() < DUPLICATE_P:
            pairs.append(pairs[0])
            sizes.append(sizes[0] if rng.random() < 0.5 else pick(rng, SIZES))
        else:
            # Companions of a held-out object are ordinary pairs: the new composition is the
            # only unseen thing in a heldout scene.
            pairs.append(pick(rng, TRAIN_PAIRS))
            sizes.append(pick(rng, SIZES))
    objects = [
        _sample_object(rng, pair, size, position)
        for pair, size, position in zip(pairs, sizes, positions, strict=True)
    ]
    return Scene(tuple(objects), _sample_background(rng, [obj.rgb for obj in objects]))


def sample_single(rng: random.Random, split: str, balance: str) -> Scene:
    """A one-object scene for classification, its label balanced over ``balance`` ("shape",
    "colour" or "pair"): first a value of that attribute, then a pair of ``split`` with it."""
    groups = _pairs_by(split, balance)
    group = pick(rng, groups)
    pair = pick(rng, group)
    size = pick(rng, SIZES)
    obj = _sample_object(rng, pair, size, pick(rng, POSITIONS))
    return Scene((obj,), _sample_background(rng, [obj.rgb]))


def sample_probe(rng: random.Random) -> Scene:
    """Two objects in one row or column with different colours and shapes, such that swapping
    their colours or shapes still names train pairs: a word-order probe must not be solvable
    by spotting an unseen composition in the wrong caption."""
    while True:
        (c1, s1), (c2, s2) = (pick(rng, TRAIN_PAIRS) for _ in range(2))
        if c1 != c2 and s1 != s2 and (c2, s1) in TRAIN_PAIRS and (c1, s2) in TRAIN_PAIRS:
            break
    pos1, pos2 = pick(rng, ALIGNED_POSITIONS)
    objects = (
        _sample_object(rng, (c1, s1), pick(rng, SIZES), pos1),
        _sample_object(rng, (c2, s2), pick(rng, SIZES), pos2),
    )
    return Scene(objects, _sample_background(rng, [obj.rgb for obj in objects]))


@cache
def _pairs_by(split: str, balance: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """The pairs of ``split`` grouped by colour or shape (or one group per pair)."""
    pairs = split_pairs(split)
    if balance == "pair":
        return tuple((pair,) for pair in pairs)
    if balance not in ("colour", "shape"):
        raise ValueError(f"balance {balance!r} is unknown; expected shape, colour or pair")
    key = 0 if balance == "colour" else 1
    values = dict.fromkeys(pair[key] for pair in pairs)
    return tuple(tuple(p for p in pairs if p[key] == value) for value in values)


def _sample_object(
    rng: random.Random, pair: tuple[str, str], size: str, position: str
) -> SceneObject:
    colour, shape = pair
    shade = index(rng, 2 * MAX_SHADE + 1) - MAX_SHADE
    rgb = _shifted(COLOUR_RGB[colour], shade)
    return SceneObject(
        shape=shape,
        colour=colour,
        size=size,
        position=position,
        rgb=rgb,
        rotation=uniform(rng, -MAX_ROTATION, MAX_ROTATION),
        offset=(uniform(rng, -MAX_OFFSET, MAX_OFFSET), uniform(rng, -MAX_OFFSET, MAX_OFFSET)),
        scale=uniform(rng, 0.92, 1.08),
    )


def _sample_background(rng: random.Random, object_rgbs: list[RGB]) -> Background:
    """A muted background whose whole colour range keeps ``MIN_BACKGROUND_DISTANCE`` from
    every object; when no draw qualifies (about 1 scene in 2000, e.g. black, white and yellow
    objects together) the farthest draw is kept, still some 100 away."""
    kind = BACKGROUND_KINDS[weighted(rng, BACKGROUND_CUMULATIVE)]
    best, best_distance = None, -1.0
    for _ in range(BACKGROUND_TRIES):
        rgb = _muted(rng)
        if kind == "plain":
            rgb2 = rgb
        elif kind == "noise":
            # Noise varies brightness around rgb: store the dark and light ends of its range.
            rgb, rgb2 = _shifted(rgb, -20), _shifted(rgb, 20)
        else:
            rgb2 = _muted(rng)
        distance = min(_segment_distance(rgb, rgb2, c) for c in object_rgbs)
        if distance > best_distance:
            best, best_distance = (rgb, rgb2), distance
        if distance >= MIN_BACKGROUND_DISTANCE:
            break
    return Background(
        kind=kind,
        rgb=best[0],
        rgb2=best[1],
        angle=uniform(rng, 0.0, 180.0),
        period=uniform(rng, 0.12, 0.3),
        texture_seed=index(rng, 2**31),
    )


def _muted(rng: random.Random) -> RGB:
    """A low-saturation colour of middling brightness: a background, never a named colour."""
    hue, saturation, value = rng.random(), rng.random(), rng.random()
    rgb = colorsys.hsv_to_rgb(hue, 0.05 + 0.3 * saturation, 0.3 + 0.55 * value)
    return tuple(round(255 * c) for c in rgb)


def _shifted(rgb: RGB, amount: int) -> RGB:
    return tuple(min(255, max(0, c + amount)) for c in rgb)


def _segment_distance(a: RGB, b: RGB, point: RGB) -> float:
    """Euclidean distance from ``point`` to the segment a-b: the background mixes a and b, so
    this is the closest any background pixel comes to the object colour."""
    direction = [bc - ac for ac, bc in zip(a, b, strict=True)]
    length2 = sum(d * d for d in direction)
    along = sum((pc - ac) * d for ac, pc, d in zip(a, point, direction, strict=True))
    t = 0.0 if length2 == 0 else min(1.0, max(0.0, along / length2))
    return math.dist([ac + t * d for ac, d in zip(a, direction, strict=True)], point)
