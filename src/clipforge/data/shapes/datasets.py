"""A map-style torch dataset of the shapes world's one-object classification views.

Preprocessing is composed from outside: ``transform`` maps the PIL image (e.g. a clipforge
image transform) and defaults to identity, so the views can be inspected without the model
stack. Training renders its image-text pairs in :mod:`clipforge.train.data`; evaluation wraps
these views in :mod:`clipforge.data.evalsets.shapes_views`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from clipforge.data.shapes.captions import article
from clipforge.data.shapes.scene import Scene
from clipforge.data.shapes.vocab import (
    ALL_PAIRS,
    COLOURS,
    SHAPES,
    check_choice,
    check_count,
    check_split,
    pair_name,
)
from clipforge.data.shapes.world import ShapesWorld

TASKS: tuple[str, ...] = ("shape", "colour", "heldout_pair")


def _check_item(index: int, size: int) -> int:
    if not 0 <= index < size:
        raise IndexError(f"index {index} is out of range for a dataset of size {size}")
    return index


class ShapesClassification(Dataset):
    """``size`` one-object images of ``split`` as ``(image, label)``.

    ``task`` picks the label: "shape" (8 classes) or "colour" (10 classes), balanced over the
    classes; or "heldout_pair", whose images show only held-out colour-shape pairs but whose
    label space is all 80 pairs, so that a model is also wrong when it picks a seen pair.
    ``split`` defaults to "val" ("heldout" for the held-out-pair task, which requires it).
    """

    def __init__(
        self,
        world: ShapesWorld,
        task: str = "shape",
        split: str | None = None,
        size: int = 1000,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        check_choice("task", task, TASKS)
        if split is None:
            split = "heldout" if task == "heldout_pair" else "val"
        if task == "heldout_pair" and split != "heldout":
            raise ValueError(
                f"split {split!r} has no held-out pairs; task heldout_pair needs split 'heldout'"
            )
        self.world = world
        self.task = task
        self.split = check_split(split)
        self.size = check_count("size", size)
        self.transform = transform
        if task == "shape":
            self.classnames = list(SHAPES)
            self.class_captions = [article(name) for name in SHAPES]
        elif task == "colour":
            self.classnames = list(COLOURS)
            self.class_captions = [article(f"{name} shape") for name in COLOURS]
        else:
            self.classnames = [pair_name(pair) for pair in ALL_PAIRS]
            self.class_captions = [article(name) for name in self.classnames]

    def __len__(self) -> int:
        return self.size

    def scene(self, index: int) -> Scene:
        """The one-object scene behind item ``index``."""
        balance = "pair" if self.task == "heldout_pair" else self.task
        return self.world.single_object_scene(self.split, _check_item(index, self.size), balance)

    def label(self, index: int) -> int:
        """The class of item ``index``, without drawing it."""
        return self._label_of(self.scene(index))

    def __getitem__(self, index: int) -> tuple[Any, int]:
        scene = self.scene(index)
        image = self.world.render(scene)
        if self.transform is not None:
            image = self.transform(image)
        return image, self._label_of(scene)

    def _label_of(self, scene: Scene) -> int:
        obj = scene.objects[0]
        if self.task == "shape":
            return SHAPES.index(obj.shape)
        if self.task == "colour":
            return COLOURS.index(obj.colour)
        return ALL_PAIRS.index(obj.pair)
