"""The closed vocabulary of the shapes world: shapes, colours, sizes, positions, splits.

Everything else in the package (sampling, drawing, captions, labels) indexes into these tuples,
so class ids are stable: label ``k`` of the shape task is always ``SHAPES[k]``. The held-out
colour-shape pairs are fixed here rather than drawn from the seed so that every run, model and
report agrees on which compositions a model has never seen in training.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

SHAPES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "hexagon",
    "heart",
    "cross",
    "diamond",
)

# Saturated, well-separated RGB values: each name must be unambiguous at 32 px.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 215, 35),
    "purple": (125, 50, 175),
    "orange": (245, 135, 25),
    "pink": (245, 125, 190),
    "cyan": (35, 205, 215),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)

SIZES: tuple[str, ...] = ("small", "large")
# Half-width of an object's box as a fraction of the image side: at 64 px a small shape is about
# 15 px across. A hexagon's flat sides then lie a pixel inside its circle, which a small
# convolutional tower learns to see within the demo's budget; at 11 px it barely could.
SIZE_RADIUS: dict[str, float] = {"small": 0.12, "large": 0.145}

# Grid cell (column, row) of each position. Two objects in the same row or column stand in a
# relation a caption can name ("left of", "above"); diagonal neighbours do not.
POSITION_GRID: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "top": (0, -1),
    "bottom": (0, 1),
    "center": (0, 0),
}
# Object centres as fractions of the image side, (x, y) with y pointing down: a grid step of
# 0.335 keeps two large objects in neighbouring slots apart even after jitter.
POSITION_XY: dict[str, tuple[float, float]] = {
    name: (round(0.5 + 0.335 * column, 3), round(0.5 + 0.335 * row, 3))
    for name, (column, row) in POSITION_GRID.items()
}
POSITIONS: tuple[str, ...] = tuple(POSITION_XY)

SPLITS: tuple[str, ...] = ("train", "val", "heldout")

# Colour-shape pairs that never appear in a train (or val) scene. Every shape and every colour
# is held out at least once and at most twice, so each word is still seen in training with
# other partners: only the composition is new.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("green", "hexagon"),
    ("blue", "heart"),
    ("yellow", "triangle"),
    ("purple", "circle"),
    ("orange", "square"),
    ("pink", "cross"),
    ("cyan", "diamond"),
    ("white", "triangle"),
    ("black", "heart"),
    ("orange", "diamond"),
    ("pink", "hexagon"),
)

# All 80 (colour, shape) pairs, colour-major: the label space of the held-out-pair task.
ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in HELDOUT_PAIRS)


def pair_name(pair: tuple[str, str]) -> str:
    """``("red", "star")`` -> ``"red star"``: the class name used in labels and captions."""
    return f"{pair[0]} {pair[1]}"


def check_choice(name: str, value: str, options: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``options``, else raise an error naming ``name``."""
    if value not in options:
        raise ValueError(f"{name} {value!r} is unknown; expected one of {', '.join(options)}")
    return value


def check_count(name: str, value: int, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in [minimum, maximum], else raise an error naming ``name``."""
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not is_int or value < minimum or (maximum is not None and value > maximum):
        expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} {value!r} is invalid; expected an int {expected}")
    return int(value)


def check_split(split: str) -> str:
    return check_choice("split", split, SPLITS)


def split_pairs(split: str) -> tuple[tuple[str, str], ...]:
    """The colour-shape pairs whose objects a scene of ``split`` is built around."""
    return HELDOUT_PAIRS if check_split(split) == "heldout" else TRAIN_PAIRS


OPPOSITE_RELATION: dict[str, str] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}


def relation(position: str, other: str) -> str | None:
    """Where an object at ``position`` is relative to one at ``other``, or None if diagonal."""
    (x, y), (ox, oy) = POSITION_GRID[position], POSITION_GRID[other]
    if (x, y) == (ox, oy) or (x != ox and y != oy):
        return None
    if y == oy:
        return "left of" if x < ox else "right of"
    return "above" if y < oy else "below"


# Prompt templates for zero-shot classification of single-object scenes, by task. A few
# phrasings per task form CLIP's prompt ensemble; "{}" takes the class name. Like the training
# captions they end without a full stop: the stop is a token the text tower never sees in
# training, and prompts that match the captions' style score higher (as CLIP's "a photo of a
# {}." matched its web captions). On eight demo-sized models the stop-free prompts scored 0.0 to
# 0.9 points higher on shape than the same prompts with a stop, and -0.4 to +1.9 on colour.
ZEROSHOT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "shape": ("a {}", "a picture of a {}", "a small {}", "a large {}", "a {} on a background"),
    "colour": (
        "a {} shape",
        "a {} object",
        "something {}",
        "a small {} shape",
        "a large {} shape",
    ),
}
