"""The shapes world's evaluation views behind the same contract as file-based sets.

Images are rendered on the fly at ``image_size`` (pass the model's, so the transform has no
resizing to do); labels, captions and prompts are computed when the view is made, so the
metadata is at hand without drawing a pixel. Views:

* :class:`ShapesClassificationSet` — zero-shot shape (8 classes), colour (10) or held-out
  colour-shape pair (80 classes, images of held-out pairs only);
* :class:`ShapesRetrievalSet` — val scenes with their canonical and templated captions;
* :class:`ShapesWordOrderSet` — the word-order probe as caption selection: each image with
  its true caption first and the word-swapped one second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from clipforge.data.evalsets.base import EvalSet, ImageTransform
from clipforge.data.shapes import (
    ZEROSHOT_TEMPLATES,
    ShapesClassification,
    ShapesWorld,
    canonical_caption,
)
from clipforge.data.shapes.drawing import MIN_IMAGE_SIZE
from clipforge.data.shapes.probe import SWAPS, word_order_probe
from clipforge.data.shapes.world import check_count

CAPTION_KINDS: tuple[str, ...] = ("canonical", "templated")


class ShapesClassificationSet(EvalSet):
    """:class:`~clipforge.data.shapes.ShapesClassification` as a classification set named
    ``shapes/<task>``, keyed ``<split>/<index>``; ``task`` is "shape", "colour" or
    "heldout_pair", ``split`` defaults to "val" ("heldout" for held-out pairs)."""

    task = "classification"

    def __init__(
        self,
        task: str = "shape",
        *,
        split: str | None = None,
        size: int = 1000,
        image_size: int = 64,
        seed: int = 0,
        transform: ImageTransform | None = None,
    ) -> None:
        world = ShapesWorld(seed=seed, image_size=image_size)
        size = check_count("size", size, minimum=1)
        self.view = ShapesClassification(world, task=task, split=split, size=size)
        self.name = f"shapes/{task}"
        self.transform = transform
        self.classnames = list(self.view.classnames)
        # Zero-shot templates of the shape and colour tasks; the held-out-pair task is scored
        # with one prompt per class because its names need "a"/"an" chosen per colour.
        self.templates: list[str] | None = (
            list(ZEROSHOT_TEMPLATES[task]) if task in ZEROSHOT_TEMPLATES else None
        )
        self.class_prompts: list[list[str]] | None = (
            None
            if task in ZEROSHOT_TEMPLATES
            else [[caption] for caption in self.view.class_captions]
        )
        self.labels = np.asarray([self.view.label(i) for i in range(size)], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.view)

    def key(self, index: int) -> str:
        return f"{self.view.split}/{index}"

    def load(self, index: int) -> tuple[Image.Image, int]:
        return self.view[index]


class ShapesRetrievalSet(EvalSet):
    """``size`` scenes of ``split`` (default "val") with their captions, named
    ``shapes/retrieval`` and keyed ``<split>/<index>``: the canonical caption (the retrieval
    ground truth the demo uses) and/or the sample's templated caption, per ``captions``.
    Different scenes can share a caption ("a red circle"), as images in COCO can."""

    task = "retrieval"

    def __init__(
        self,
        *,
        split: str = "val",
        size: int = 1000,
        image_size: int = 64,
        seed: int = 0,
        captions: Sequence[str] = CAPTION_KINDS,
        transform: ImageTransform | None = None,
    ) -> None:
        if not captions or any(kind not in CAPTION_KINDS for kind in captions):
            raise ValueError(
                f"captions {captions!r}: expected a non-empty subset of {CAPTION_KINDS}"
            )
        self.world = ShapesWorld(seed=seed, image_size=image_size)
        self.split = split
        self.name = "shapes/retrieval"
        self.transform = transform
        count = check_count("size", size, minimum=1)
        self._scenes = [self.world.scene(split, index) for index in range(count)]
        self.captions = []
        for index, scene in enumerate(self._scenes):
            texts = {
                "canonical": canonical_caption(scene),
                "templated": self.world.caption(split, index, scene),
            }
            self.captions.append(list(dict.fromkeys(texts[kind] for kind in captions)))

    def __len__(self) -> int:
        return len(self._scenes)

    def key(self, index: int) -> str:
        return f"{self.split}/{index}"

    def load(self, index: int) -> tuple[Image.Image, list[str]]:
        return self.world.render(self._scenes[index]), list(self.captions[index])


class ShapesWordOrderSet(EvalSet):
    """The word-order probe (:func:`~clipforge.data.shapes.word_order_probe`) as caption
    selection, named ``shapes/word-order`` and keyed ``probe/<index>``: item ``i`` is the
    probe image with ``[correct, swapped]``; ``kinds[i]`` is its swap ("colour", "shape" or
    "relation"), for per-kind scores."""

    task = "caption_selection"

    def __init__(
        self,
        *,
        size: int = 500,
        image_size: int = 64,
        seed: int = 0,
        swaps: Sequence[str] = SWAPS,
        transform: ImageTransform | None = None,
    ) -> None:
        # The probe's captions do not depend on the image size: take them from the smallest
        # rendering and draw each image at full size only when it is asked for.
        count = check_count("size", size, minimum=1)
        probe = word_order_probe(ShapesWorld(seed=seed, image_size=MIN_IMAGE_SIZE), count, swaps)
        self.world = ShapesWorld(seed=seed, image_size=image_size)
        self.name = "shapes/word-order"
        self.transform = transform
        self.captions = [[item.correct, item.swapped] for item in probe]
        self.kinds = [swaps[index % len(swaps)] for index in range(count)]

    def __len__(self) -> int:
        return len(self.captions)

    def key(self, index: int) -> str:
        return f"probe/{index}"

    def load(self, index: int) -> tuple[Image.Image, list[str]]:
        image = self.world.render(self.world.probe_scene(index))
        return image, list(self.captions[index])
