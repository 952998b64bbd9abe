"""The shapes world: a procedurally generated image-text dataset that needs no download.

Images of one to three shapes (8 shapes, 10 named colours, 2 sizes, 5 positions) on plain or
textured backgrounds, with templated captions. Every sample is a pure function of
``(seed, split, index)``, so any worker or rank can generate any index. It supports the
evaluations a CLIP model needs before real data is available: zero-shot shape and colour
classification, retrieval, held-out colour-shape compositions (``HELDOUT_PAIRS`` never appear in
``train`` or ``val``; every ``heldout`` scene has one) and a word-order probe.

Modules, each with one job: ``vocab`` (names, splits, held-out pairs), ``scene`` (the data),
``sampling`` (random scenes, portable random draws), ``drawing`` (pixels),
``captions`` (text), ``world`` (seeding), ``probe`` (word order) and ``writers`` (webdataset
and CSV output); the evaluation views are :mod:`clipforge.data.evalsets.shapes_views`.
"""

from clipforge.data.shapes.captions import canonical_caption, caption
from clipforge.data.shapes.drawing import render
from clipforge.data.shapes.probe import word_order_probe
from clipforge.data.shapes.scene import Background, Scene, SceneObject
from clipforge.data.shapes.vocab import (
    ALL_PAIRS,
    COLOURS,
    HELDOUT_PAIRS,
    POSITIONS,
    SHAPES,
    SIZES,
    TRAIN_PAIRS,
    ZEROSHOT_TEMPLATES,
)
from clipforge.data.shapes.world import ShapesWorld
from clipforge.data.shapes.writers import write_shapes

__all__ = [
    "ALL_PAIRS",
    "COLOURS",
    "HELDOUT_PAIRS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "TRAIN_PAIRS",
    "ZEROSHOT_TEMPLATES",
    "Background",
    "Scene",
    "SceneObject",
    "ShapesWorld",
    "canonical_caption",
    "caption",
    "render",
    "word_order_probe",
    "write_shapes",
]
