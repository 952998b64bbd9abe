"""The shapes world's evaluation views: the stored sets of file-based data, drawn on demand.

Each view draws its scenes when it is made, so labels, captions and prompts are at hand
without a pixel; an image is rendered at ``image_size`` (pass the model's, so the transform
has no resizing to do) only when it is loaded. Items are keyed ``<split>/<index>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from clipforge.data.evalsets.base import ClassificationSet, ImageTransform, RetrievalSet
from clipforge.data.shapes import ALL_PAIRS, COLOURS, SHAPES, ZEROSHOT_TEMPLATES, ShapesWorld
from clipforge.data.shapes.captions import article, canonical_caption
from clipforge.data.shapes.probe import probe_captions, probe_kinds
from clipforge.data.shapes.vocab import check_choice, check_count, check_split, pair_name

CAPTION_KINDS: tuple[str, ...] = ("canonical", "templated")
# task -> the SceneObject attribute it labels (and balances the scenes over), and its classes
CLASSIFICATION_TASKS: dict[str, tuple[str, tuple]] = {
    "shape": ("shape", SHAPES),
    "colour": ("colour", COLOURS),
    "heldout_pair": ("pair", ALL_PAIRS),
}


class ShapesClassificationSet(ClassificationSet):
    """``size`` one-object scenes of ``split`` as the classification set ``shapes/<task>``.

    ``task`` picks the label: "shape" (8 classes) or "colour" (10 classes), balanced over the
    classes; or "heldout_pair", whose images show only held-out colour-shape pairs but whose
    label space is all 80 pairs, so that a model is also wrong when it picks a seen pair.
    ``split`` defaults to "val" ("heldout" for the held-out-pair task, which requires it).
    ``scenes[i]`` is item ``i``'s scene; ``class_captions`` one caption per class ("a red star").
    """

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
        attribute, classes = CLASSIFICATION_TASKS[check_choice("task", task, CLASSIFICATION_TASKS)]
        if split is None:
            split = "heldout" if task == "heldout_pair" else "val"
        if task == "heldout_pair" and split != "heldout":
            raise ValueError(
                f"split {split!r} has no held-out pairs; task heldout_pair needs split 'heldout'"
            )
        self.split = check_split(split)
        world = ShapesWorld(seed=seed, image_size=image_size)
        count = check_count("size", size, minimum=1)
        self.scenes = [world.single_object_scene(split, i, attribute) for i in range(count)]
        names = [pair_name(c) if attribute == "pair" else c for c in classes]
        super().__init__(
            name=f"shapes/{task}",
            keys=[f"{split}/{index}" for index in range(count)],
            images=[partial(world.render, scene) for scene in self.scenes],
            labels=np.asarray(
                [classes.index(getattr(scene.objects[0], attribute)) for scene in self.scenes],
                dtype=np.int64,
            ),
            classnames=names,
            # The held-out-pair task is scored with one prompt per class, not templates: its
            # names need "a"/"an" chosen per colour.
            templates=ZEROSHOT_TEMPLATES.get(task),
            transform=transform,
        )
        self.class_captions = [article(f"{n} shape" if task == "colour" else n) for n in names]
        if task not in ZEROSHOT_TEMPLATES:
            self.class_prompts = [[caption] for caption in self.class_captions]


class ShapesRetrievalSet(RetrievalSet):
    """``size`` scenes of ``split`` (default "val") as the retrieval set ``shapes/retrieval``,
    with the canonical caption (the retrieval ground truth the demo uses) and/or the sample's
    templated caption, per ``captions`` (default: both). Different scenes can share a caption
    ("a red circle"), as images in COCO can."""

    def __init__(
        self,
        *,
        split: str | None = None,
        size: int = 1000,
        image_size: int = 64,
        seed: int = 0,
        captions: Sequence[str] | None = None,
        transform: ImageTransform | None = None,
    ) -> None:
        split = "val" if split is None else split
        kinds = CAPTION_KINDS if captions is None else captions
        if not kinds or any(kind not in CAPTION_KINDS for kind in kinds):
            raise ValueError(f"captions {kinds!r}: expected a non-empty subset of {CAPTION_KINDS}")
        world = ShapesWorld(seed=seed, image_size=image_size)
        scenes = [world.scene(split, i) for i in range(check_count("size", size, minimum=1))]
        texts = [
            {"canonical": canonical_caption(scene), "templated": world.caption(split, i, scene)}
            for i, scene in enumerate(scenes)
        ]
        super().__init__(
            name="shapes/retrieval",
            keys=[f"{split}/{index}" for index in range(len(scenes))],
            images=[partial(world.render, scene) for scene in scenes],
            captions=[list(dict.fromkeys(text[kind] for kind in kinds)) for text in texts],
            transform=transform,
        )


class ShapesWordOrderSet(RetrievalSet):
    """The word-order probe (:func:`~clipforge.data.shapes.word_order_probe`) as the caption
    selection set ``shapes/word-order``, keyed ``probe/<index>``: item ``i`` is the probe image
    with ``[correct, swapped]``; ``kinds[i]`` is its swap ("colour", "shape" or "relation"),
    for per-kind scores."""

    task = "caption_selection"

    def __init__(
        self,
        *,
        size: int = 500,
        image_size: int = 64,
        seed: int = 0,
        transform: ImageTransform | None = None,
    ) -> None:
        world = ShapesWorld(seed=seed, image_size=image_size)
        self.kinds = probe_kinds(check_count("size", size, minimum=1))
        scenes = [world.probe_scene(index) for index in range(size)]
        super().__init__(
            name="shapes/word-order",
            keys=[f"probe/{index}" for index in range(size)],
            images=[partial(world.render, scene) for scene in scenes],
            captions=[
                list(probe_captions(scene, kind))
                for scene, kind in zip(scenes, self.kinds, strict=True)
            ],
            transform=transform,
        )
