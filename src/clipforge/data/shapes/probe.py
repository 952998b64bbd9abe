"""The word-order probe: does a model tell "a red circle left of a blue square" from the same
words in another order?

Each item is an image of two objects with one true caption and one false caption made by
swapping the objects' colours, their shapes, or the relation. Colour and shape swaps keep the
exact bag of words, so a model that ignores word order scores at chance on them; every
composition named by either caption is a train pair, so novelty gives nothing away.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from PIL import Image

from clipforge.data.shapes.captions import relation_caption
from clipforge.data.shapes.scene import Scene
from clipforge.data.shapes.vocab import OPPOSITE_RELATION, check_count, relation
from clipforge.data.shapes.world import ShapesWorld

SWAPS: tuple[str, ...] = ("colour", "shape", "relation")


class ProbePair(NamedTuple):
    """An image and two captions; only ``correct`` describes the image."""

    image: Image.Image
    correct: str
    swapped: str


def probe_kinds(n: int, swaps: Sequence[str] = SWAPS) -> list[str]:
    """The swap of each of ``n`` items, ``swaps[i % len(swaps)]``: the default mixes the three
    kinds evenly and ``swaps=("relation",)`` gives one kind for a per-kind score."""
    check_count("n", n)
    if not swaps or any(swap not in SWAPS for swap in swaps):
        raise ValueError(f"swaps {swaps!r} is invalid; expected a non-empty subset of {SWAPS}")
    return [swaps[index % len(swaps)] for index in range(n)]


def probe_captions(scene: Scene, swap: str) -> tuple[str, str]:
    """``(correct, swapped)`` of a probe scene (:meth:`ShapesWorld.probe_scene`), the false
    caption made by swapping the objects' colours, their shapes or the relation (``swap``)."""
    first, second = scene.objects
    rel = relation(first.position, second.position)
    (c1, s1), (c2, s2) = first.pair, second.pair
    swapped = {
        "colour": ((c2, s1), rel, (c1, s2)),
        "shape": ((c1, s2), rel, (c2, s1)),
        "relation": ((c1, s1), OPPOSITE_RELATION[rel], (c2, s2)),
    }[swap]
    return relation_caption((c1, s1), rel, (c2, s2)), relation_caption(*swapped)


def word_order_probe(
    world: ShapesWorld, n: int = 500, swaps: Sequence[str] = SWAPS
) -> list[ProbePair]:
    """``n`` probe items; item ``i`` uses swap ``swaps[i % len(swaps)]`` (see
    :func:`probe_kinds`)."""
    items = []
    for index, swap in enumerate(probe_kinds(n, swaps)):
        scene = world.probe_scene(index)
        items.append(ProbePair(world.render(scene), *probe_captions(scene, swap)))
    return items
