"""Captions for scenes: varied natural ones for training, one canonical one for evaluation.

Random captions pick among templates and synonyms ("a big red star at the left", "two small
blue squares", "a cyan hexagon above a pink heart") so that a model learns the words, not one
sentence pattern. Every caption names the shape of every object (a synonym from the tables
below); colour is named half of the time, and size, position and background only sometimes, as
in real alt-text. Leaving colour out of captions matters for learning: when every caption names
colours, colour and position alone tell the captions of a batch apart, the contrastive loss
gives shape little gradient, and a small model learns shapes far more slowly; naming it in half
the phrases keeps colour learnt while shape gets its gradient. Size is named in under a third of
the phrases for a like reason: small and large objects differ by about 3 px across, a cue as fine
as a hexagon's corners against a circle's outline, and each caption that names it draws the image
tower to it. The measurements behind both shares are in docs/benchmarks.md ("The demo").
The canonical caption is a fixed function of the scene, used where a caption must be reproducible
(retrieval ground truth, shard metadata).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence

from clipforge.data.shapes.sampling import pick
from clipforge.data.shapes.scene import Scene, SceneObject
from clipforge.data.shapes.vocab import COLOURS, POSITION_GRID, relation

# Word choices per attribute; the first entry is the canonical word.
SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "circle": (("circle", "circles"), ("disc", "discs")),
    "square": (("square", "squares"),),
    "triangle": (("triangle", "triangles"),),
    "star": (("star", "stars"), ("five-pointed star", "five-pointed stars")),
    "hexagon": (("hexagon", "hexagons"),),
    "heart": (("heart", "hearts"),),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
    "diamond": (("diamond", "diamonds"), ("rhombus", "rhombuses")),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {colour: (colour,) for colour in COLOURS} | {
    "purple": ("purple", "violet"),
    "cyan": ("cyan", "turquoise"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big"),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "at the left", "on the left side", "to the left"),
    "right": ("on the right", "at the right", "on the right side", "to the right"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "center": ("in the center", "in the middle", "in the centre"),
}
RELATION_PHRASES: dict[str, tuple[str, ...]] = {
    "left of": ("left of", "to the left of", "on the left of"),
    "right of": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over"),
    "below": ("below", "under", "beneath"),
}
BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "plain": ("on a plain background", "on a flat background"),
    "noise": ("on a noisy background", "on a grainy background", "on a mottled background"),
    "stripes": ("on a striped background", "on stripes"),
    "gradient": ("on a gradient background", "on a smooth gradient"),
}
PREFIXES: tuple[str, ...] = ("a photo of ", "an image of ", "a picture of ", "a drawing of ")
CONNECTIVES: tuple[str, ...] = ("and", "with", "and also", "as well as")
PREFIX_P = 0.4
COUNT_WORDS: dict[int, tuple[str, ...]] = {2: ("two", "a pair of"), 3: ("three",)}
COLOUR_P = 0.5  # chance a phrase names the colour
SIZE_P = 0.3  # chance a phrase names the size
POSITION_P = 0.5  # chance a phrase names the position
RELATION_P = 0.6  # chance a two-object scene is described by its relation when it has one
BACKGROUND_P = 0.2

# Reading order of positions (top row, then left to right), for canonical captions.
_READING_ORDER = sorted(POSITION_GRID, key=lambda p: POSITION_GRID[p][::-1])


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front, by its first letter ("an orange star")."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(scene: Scene, rng: random.Random) -> str:
    """A natural caption for ``scene`` drawn from the templates; the same generator state
    always gives the same caption."""
    objects = scene.objects
    if (
        len(objects) == 2
        and objects[0].pair != objects[1].pair
        and relation(objects[0].position, objects[1].position) is not None
        and rng.random() < RELATION_P
    ):
        a, b = objects if rng.random() < 0.5 else objects[::-1]
        rel = pick(rng, RELATION_PHRASES[relation(a.position, b.position)])
        body = f"{_phrase(rng, [a], False)} {rel} {_phrase(rng, [b], False)}"
    else:
        groups = _groups(objects, lambda obj: obj.pair)
        phrases = [_phrase(rng, group, rng.random() < POSITION_P) for group in groups]
        if len(phrases) == 2:
            body = f"{phrases[0]} {pick(rng, CONNECTIVES)} {phrases[1]}"
        else:
            body = _join(phrases)
    if rng.random() < PREFIX_P:
        body = pick(rng, PREFIXES) + body
    if rng.random() < BACKGROUND_P:
        body += " " + pick(rng, BACKGROUND_PHRASES[scene.background.kind])
    return body


def canonical_caption(scene: Scene) -> str:
    """The one fixed caption of ``scene``: canonical words for every object's size, colour,
    shape and position, in reading order, identical objects counted ("two small blue squares
    on the left and at the top")."""
    ordered = sorted(scene.objects, key=lambda obj: _READING_ORDER.index(obj.position))
    phrases = []
    for group in _groups(ordered, lambda obj: (obj.pair, obj.size)):
        first, count = group[0], len(group)
        singular, plural = SHAPE_WORDS[first.shape][0]
        if count == 1:
            head = article(f"{first.size} {first.colour} {singular}")
        else:
            head = f"{COUNT_WORDS[count][0]} {first.size} {first.colour} {plural}"
        places = " and ".join(POSITION_PHRASES[obj.position][0] for obj in group)
        phrases.append(f"{head} {places}")
    return _join(phrases)


def relation_caption(first: tuple[str, str], rel: str, second: tuple[str, str]) -> str:
    """``("red", "circle"), "left of", ("blue", "square")`` -> "a red circle left of a blue
    square": the fixed template of the word-order probe, canonical words only."""
    return f"{article(' '.join(first))} {rel} {article(' '.join(second))}"


def _groups(
    objects: Sequence[SceneObject], key: Callable[[SceneObject], Hashable]
) -> list[list[SceneObject]]:
    """Objects grouped by ``key``, in order of first appearance."""
    groups: dict[Hashable, list[SceneObject]] = {}
    for obj in objects:
        groups.setdefault(key(obj), []).append(obj)
    return list(groups.values())


def _phrase(rng: random.Random, group: list[SceneObject], with_position: bool) -> str:
    """A noun phrase for one object ("a big red star") or a counted group ("two red stars"),
    optionally followed by where it is ("... at the top")."""
    first = group[0]
    words = []
    if len({obj.size for obj in group}) == 1 and rng.random() < SIZE_P:
        words.append(pick(rng, SIZE_WORDS[first.size]))
    if rng.random() < COLOUR_P:
        words.append(pick(rng, COLOUR_WORDS[first.colour]))
    singular, plural = pick(rng, SHAPE_WORDS[first.shape])
    if len(group) == 1:
        phrase = article(" ".join([*words, singular]))
    else:
        phrase = " ".join([pick(rng, COUNT_WORDS[len(group)]), *words, plural])
    if with_position:
        phrase += " " + " and ".join(pick(rng, POSITION_PHRASES[obj.position]) for obj in group)
    return phrase


def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return f"{', '.join(phrases[:-1])} and {phrases[-1]}"
