"""Batching an evaluation set in order, with unreadable images skipped, counted and logged.

:class:`EvalLoader` wraps a ``DataLoader`` over any :class:`~clipforge.data.evalsets.base.EvalSet`
(its transform must give tensors). Samples come in index order, so results line up with the
set's metadata through :attr:`LabelBatch.indices` / :attr:`CaptionBatch.indices`. A sample whose
image cannot be decoded becomes a :class:`Skipped` record in its batch; the loader adds it to
:attr:`EvalLoader.stats` and logs it (the first few per reason, then the 2**k-th), and raises
:class:`~clipforge.data.skips.DataError` once skips pass ``max_skip_rate`` (checked from
``min_samples`` samples on, and over the whole set at the end).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader, Dataset

from clipforge.data.evalsets.base import CAPTION_TASKS, TASKS, EvalSet
from clipforge.data.skips import DataError, SampleSkipped, SkipReason, SkipStats
from clipforge.data.stream import BatchRecord
from clipforge.typed_config import check

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A sample the loader left out: its index, id, and why."""

    index: int
    sample_id: str
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class LabelBatch(BatchRecord):
    """A classification batch; unpacks as ``pixels, labels = batch``. ``labels`` are class
    indices, or multi-hot targets for a multi-label set; ``indices`` the samples' indices in the
    set, ``keys`` their ids; ``skipped`` the samples of this batch's index range that could not
    be read (already counted in :attr:`EvalLoader.stats`)."""

    unpacks: ClassVar[tuple[str, ...]] = ("pixels", "labels")

    pixels: torch.Tensor  # (B, 3, H, W)
    labels: torch.Tensor  # (B,) int64 or (B, C) float32
    indices: torch.Tensor  # (B,) int64
    keys: tuple[str, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class CaptionBatch(BatchRecord):
    """A retrieval or caption-selection batch; unpacks as ``pixels, captions, caption_image``.

    ``captions`` are the ``T`` captions of the ``B`` images, flat, image by image (for caption
    selection, each image's correct caption first); ``caption_image[t]`` is the position *in
    this batch* of caption ``t``'s image, so over a pass caption ``t`` of batch ``k`` belongs to
    image ``offset_k + caption_image[t]``, ``offset_k`` the images delivered before batch ``k``;
    ``indices``, ``keys`` and ``skipped`` as in :class:`LabelBatch`.
    """

    unpacks: ClassVar[tuple[str, ...]] = ("pixels", "captions", "caption_image")

    pixels: torch.Tensor  # (B, 3, H, W)
    captions: tuple[str, ...]
    caption_image: torch.Tensor  # (T,) int64
    indices: torch.Tensor  # (B,) int64
    keys: tuple[str, ...]
    skipped: tuple[Skipped, ...]


@dataclass(frozen=True)
class _Batches(Dataset):
    """Batch ``k`` of the set: samples ``k*B .. k*B + B - 1`` collated for the set's task, the
    unreadable ones as :class:`Skipped` records (a dataset of whole batches, so a DataLoader
    worker reads one batch and the batches keep their order)."""

    dataset: EvalSet
    batch_size: int

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __getitem__(self, batch: int) -> LabelBatch | CaptionBatch:
        good: list[tuple[int, str, torch.Tensor, Any]] = []
        skipped: list[Skipped] = []
        start = batch * self.batch_size
        for index in range(start, min(start + self.batch_size, len(self.dataset))):
            sample_id = self.dataset.sample_id(index)
            try:
                good.append((index, sample_id, *self.dataset[index]))
            except SampleSkipped as err:
                skipped.append(Skipped(index, err.sample_id or sample_id, err.reason, err.detail))
        indices = torch.tensor([item[0] for item in good], dtype=torch.long)  # (B,)
        keys = tuple(item[1] for item in good)
        pixels = torch.stack([item[2] for item in good]) if good else torch.empty(0, 3, 0, 0)
        task = self.dataset.task
        if task in CAPTION_TASKS:
            captions = tuple(text for item in good for text in item[3])
            caption_image = torch.tensor(
                [position for position, item in enumerate(good) for _ in item[3]],
                dtype=torch.long,
            )  # (T,)
            return CaptionBatch(pixels, captions, caption_image, indices, keys, tuple(skipped))
        if task == "multilabel":
            labels = torch.stack([item[3] for item in good]) if good else torch.empty(0, 0)
        else:
            labels = torch.tensor([item[3] for item in good], dtype=torch.long)  # (B,)
        return LabelBatch(pixels, labels, indices, keys, tuple(skipped))


@dataclass(eq=False)
class EvalLoader:
    """Batches of an evaluation set in index order; see the module docstring.

    ``len()`` is the number of batches when nothing is skipped (an upper bound). Each pass
    starts new :attr:`stats`. A pass in which no sample can be read raises
    :class:`DataError`.
    """

    dataset: EvalSet
    _: KW_ONLY
    batch_size: int = 256
    workers: int = 0
    max_skip_rate: float = 0.1
    min_samples: int = 100
    pin_memory: bool = False
    stats: SkipStats = field(default_factory=SkipStats, init=False)

    def __post_init__(self) -> None:
        dataset = self.dataset
        if getattr(dataset, "task", None) not in TASKS:
            raise ValueError(f"EvalLoader needs an evaluation set, got {type(dataset).__name__}")
        if dataset.transform is None:
            raise ValueError(
                f"EvalLoader({dataset.name}): the set has no transform to turn images into "
                "pixels; pass transform= when opening it"
            )
        check("count", "EvalLoader: ", batch_size=self.batch_size, min_samples=self.min_samples)
        check("index", "EvalLoader: ", workers=self.workers)
        check("share", "EvalLoader: ", max_skip_rate=self.max_skip_rate)

    def __len__(self) -> int:
        return len(_Batches(self.dataset, self.batch_size))

    def __iter__(self) -> Iterator[LabelBatch | CaptionBatch]:
        self.stats = SkipStats()
        batches = _Batches(self.dataset, self.batch_size)
        loader = DataLoader(
            batches, batch_size=None, num_workers=self.workers, pin_memory=self.pin_memory
        )
        delivered = 0
        for batch in loader:
            self.stats.seen += batch.size + len(batch.skipped)
            for skip in batch.skipped:
                self.stats.add(skip.reason, skip.sample_id, skip.detail)
            self._check(self.min_samples)
            if batch.size:
                delivered += batch.size
                yield batch
        self._check(1)
        if self.stats.skipped:
            logger.warning("%s: %s", self.dataset.name, self.stats.summary())
        if delivered == 0:
            raise DataError(f"{self.dataset.name}: no readable sample ({self.stats.summary()})")

    def _check(self, min_samples: int) -> None:
        self.stats.check(
            source=self.dataset.name, max_rate=self.max_skip_rate, min_samples=min_samples
        )
