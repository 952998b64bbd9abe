"""The shapes world: every sample a pure function of (seed, split, index).

Each sample gets its own ``random.Random`` seeded with ``"seed/split/stream/index"``, so any
DataLoader worker or distributed rank can produce any index on its own, in any order, and get
the same pixels and caption. ``stream`` separates the independent uses of one index (the scene,
its caption, the classification view, the probe) so that changing one never shifts another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from clipforge.data.shapes.captions import caption
from clipforge.data.shapes.drawing import check_image_size, render
from clipforge.data.shapes.sampling import sample_probe, sample_scene, sample_single
from clipforge.data.shapes.scene import Scene
from clipforge.data.shapes.vocab import check_count, check_split

# Independent random streams per sample index.
_SCENE, _CAPTION, _SINGLE, _PROBE = "scene", "caption", "single", "probe"


@dataclass(frozen=True)
class ShapesWorld:
    """A seeded source of shapes-world scenes, images and captions at one image size."""

    seed: int = 0
    image_size: int = 64

    def __post_init__(self) -> None:
        check_count("seed", self.seed)
        check_image_size(self.image_size)

    def scene(self, split: str, index: int) -> Scene:
        """Scene ``index`` of ``split`` ("train", "val" or "heldout"): 1-3 objects."""
        return sample_scene(self._rng(split, _SCENE, index), split)

    def caption(self, split: str, index: int, scene: Scene | None = None, variant: int = 0) -> str:
        """The (randomly templated but fixed) caption of sample ``index`` of ``split``; pass
        ``scene`` when it is at hand, to skip drawing it again. ``variant`` 1, 2, ... give
        further captions of the same scene, each from a stream of its own."""
        if scene is None:
            scene = self.scene(split, index)
        stream = _CAPTION if check_count("variant", variant) == 0 else f"{_CAPTION}{variant}"
        return caption(scene, self._rng(split, stream, index))

    def sample(self, split: str, index: int) -> tuple[Image.Image, str]:
        """Sample ``index`` of ``split`` as ``(RGB image, caption)``."""
        scene = self.scene(split, index)
        return self.render(scene), self.caption(split, index, scene)

    def single_object_scene(self, split: str, index: int, balance: str = "shape") -> Scene:
        """One-object scene ``index`` of ``split`` for classification, its labels balanced
        over ``balance``: "shape", "colour" or "pair"."""
        return sample_single(self._rng(split, _SINGLE, index), split, balance)

    def probe_scene(self, index: int) -> Scene:
        """Two objects in a row or column with different colours and shapes, from train pairs
        only (drawn from a stream of its own, not from any split's samples)."""
        return sample_probe(self._rng("val", _PROBE, index))

    def render(self, scene: Scene) -> Image.Image:
        """``scene`` drawn at this world's image size."""
        return render(scene, self.image_size)

    def _rng(self, split: str, stream: str, index: int) -> random.Random:
        # A str seed is hashed with SHA-512, and Python keeps str seeding stable across versions.
        key = f"{self.seed}/{check_split(split)}/{stream}/{check_count('index', index)}"
        return random.Random(key)
