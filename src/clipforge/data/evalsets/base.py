"""The evaluation-set contract: map-style datasets of ``(pixels, target)`` with their metadata.

Evaluation reads every sample exactly once, in order, and needs to know which sample each
result belongs to, so evaluation sets are map-style (index ``i`` is always the same sample) and
all their metadata (labels, class names, captions) is read when the set is opened, before any
image is decoded: a wrong label or an empty split fails at once, naming the input, instead of
half-way through a long run. Images are decoded lazily in ``__getitem__``; one that cannot be
decoded raises :class:`~clipforge.data.skips.SampleSkipped`, which :class:`~clipforge.data.evalsets.loader.EvalLoader`
turns into a counted, logged skip.

Targets by task:

* ``"classification"``: an ``int`` class index;
* ``"multilabel"``: a float32 ``(C,)`` multi-hot tensor;
* ``"retrieval"``: the list of the image's captions;
* ``"caption_selection"``: a list of candidate captions, the correct one first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from clipforge.data.skips import DataError, SampleSkipped, SkipReason, open_sample_image

ImageTransform = Callable[[Image.Image], Any]

TASKS: tuple[str, ...] = ("classification", "multilabel", "retrieval", "caption_selection")
CAPTION_TASKS: tuple[str, ...] = ("retrieval", "caption_selection")


@dataclass(frozen=True)
class MemberRef:
    """Where one tar member's bytes lie: ``size`` bytes at byte ``offset`` of ``shard``."""

    shard: str
    offset: int
    size: int

    def read(self) -> bytes:
        """The member's bytes; fewer than ``size`` when the shard is truncated."""
        with open(self.shard, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.size)


# An image file, a tar member, a drawing (the shapes world renders on demand), or no image.
ImageRef = Path | MemberRef | Callable[[], Image.Image] | None


def read_image(ref: ImageRef, sample_id: str) -> Image.Image:
    """Decode the image behind ``ref``; :class:`SampleSkipped` with the skip reason when it
    is absent, missing, empty, truncated or not an image."""
    if callable(ref):
        return ref()
    source: bytes | Path | None = ref
    if isinstance(ref, MemberRef):
        try:
            data = ref.read()
        except OSError as err:
            raise SampleSkipped(SkipReason.BAD_MEMBER, str(err), sample_id) from err
        if len(data) != ref.size:
            detail = f"shard {ref.shard!r} ends after {len(data)} of the image's {ref.size} bytes"
            raise SampleSkipped(SkipReason.BAD_MEMBER, detail, sample_id)
        source = data
    try:
        return open_sample_image(source, name=sample_id)
    except SampleSkipped as err:
        raise SampleSkipped(err.reason, err.detail, sample_id) from None


class EvalSet(Dataset):
    """What every evaluation set has: a ``name`` (its path or registry name, used in errors and
    logs), a ``task`` (see :data:`TASKS`), and per sample, held in memory, a key, an image
    reference and a target entry (``what`` names them in the length error); an optional
    ``transform`` maps the PIL image to pixels ``(3, H, W)`` (``None``: items hold the PIL
    image). Subclasses implement :meth:`load`."""

    name: str
    task: str
    # The attributes holding one entry per sample (those a set has), which :meth:`select` slices;
    # tests/test_evaluate.py checks that every shapes view's per-sample list is named here.
    PER_SAMPLE: tuple[str, ...] = ("_keys", "_images", "labels", "captions", "scenes", "kinds")

    def __init__(
        self,
        name: str,
        keys: Sequence[str],
        images: Sequence[ImageRef],
        targets: Sized,
        what: str,
        transform: ImageTransform | None,
    ) -> None:
        if not len(keys) == len(images) == len(targets):
            raise ValueError(
                f"{name}: {len(keys)} keys, {len(images)} images and {len(targets)} {what}"
            )
        if not keys:
            raise DataError(f"{name}: no samples")
        self.name = name
        self.transform = transform
        self._keys = list(keys)
        self._images = list(images)

    def __len__(self) -> int:
        return len(self._keys)

    def key(self, index: int) -> str:
        """The sample's key inside :attr:`name`: a relative path, a tar key, a row."""
        return self._keys[index]

    def load(self, index: int) -> tuple[Image.Image, Any]:
        """``(PIL image, target)`` of sample ``index``, before the transform."""
        raise NotImplementedError

    def sample_id(self, index: int) -> str:
        """``name:key``, the id logs and skip counts use."""
        return f"{self.name}:{self.key(index)}"

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {self.name} ({len(self)} samples)")
        image, target = self.load(index)
        return (image if self.transform is None else self.transform(image)), target

    def image(self, index: int) -> Image.Image:
        """The decoded image of sample ``index`` (see :func:`read_image`)."""
        return read_image(self._images[index], self.sample_id(index))

    def select(self, start: int, stop: int) -> EvalSet:
        """Samples ``[start, stop)`` as a set of their own, re-indexed from 0 (a split's range).

        Per-sample attributes are sliced; class names, templates, prompts and the transform are
        shared. Keys stay the samples' keys, so logs name the real sample.
        """
        if not 0 <= start < stop <= len(self):
            raise ValueError(
                f"range {start}:{stop} is outside the {len(self)} samples of {self.name}"
            )
        part = copy.copy(self)
        for attr in self.PER_SAMPLE:
            if hasattr(self, attr):
                setattr(part, attr, getattr(self, attr)[start:stop])
        return part


class ClassificationSet(EvalSet):
    """Images with a class label (``task="classification"``) or a multi-hot label vector
    (``"multilabel"``), read from files or tar members.

    ``labels`` is int64 ``(N,)`` for single-label sets and uint8 ``(N, C)`` for multi-label
    ones; ``classnames`` has ``C`` entries; ``templates`` are zero-shot prompt templates with
    ``{}`` for the class name, or ``None`` when the data brings none.
    """

    def __init__(
        self,
        *,
        name: str,
        keys: Sequence[str],
        images: Sequence[ImageRef],
        labels: np.ndarray,
        classnames: Sequence[str],
        templates: Sequence[str] | None = None,
        transform: ImageTransform | None = None,
    ) -> None:
        super().__init__(name, keys, images, labels, "labels", transform)
        self.task = "multilabel" if labels.ndim == 2 else "classification"
        self.classnames = list(classnames)
        self.templates = None if templates is None else list(templates)
        self.class_prompts: list[list[str]] | None = None
        self.labels = labels

    def load(self, index: int) -> tuple[Image.Image, int | torch.Tensor]:
        if self.task == "multilabel":
            return self.image(index), torch.from_numpy(self.labels[index].astype(np.float32))
        return self.image(index), int(self.labels[index])


class RetrievalSet(EvalSet):
    """Images with one or more captions each (``task="retrieval"``); ``captions[i]`` lists the
    captions of image ``i``, so texts can be encoded without decoding a single image."""

    task = "retrieval"

    def __init__(
        self,
        *,
        name: str,
        keys: Sequence[str],
        images: Sequence[ImageRef],
        captions: Sequence[Sequence[str]],
        transform: ImageTransform | None = None,
    ) -> None:
        super().__init__(name, keys, images, captions, "caption lists", transform)
        empty = [key for key, texts in zip(keys, captions, strict=True) if not texts]
        if empty:
            raise DataError(f"{name}: {len(empty)} images have no caption (first: {empty[0]!r})")
        self.captions = [list(texts) for texts in captions]

    def load(self, index: int) -> tuple[Image.Image, list[str]]:
        return self.image(index), list(self.captions[index])


def read_lines(path: Path, what: str) -> list[str]:
    """The stripped lines of a UTF-8 text file of one entry per line (class names, templates),
    trailing blank lines dropped; a blank line between entries is an error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} not found")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise DataError(f"{what} file {str(path)!r} is not UTF-8 ({err})") from err
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DataError(f"{what} file {str(path)!r} is empty")
    blank = [number for number, line in enumerate(lines, 1) if not line]
    if blank:
        raise DataError(f"{what} file {str(path)!r}: line {blank[0]} is blank")
    return lines
