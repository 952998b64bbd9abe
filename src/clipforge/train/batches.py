"""Training batches indexed by optimiser step, so that a resumed run sees exactly the batches
an uninterrupted run would have seen.

``StepBatches`` is the trainer's only view of data: ``batches(start_step)`` yields one batch per
optimiser step from ``start_step`` on, for this rank. ``TensorBatches`` serves a data set held in
memory (the shapes world, pre-rendered); ``LoaderBatches`` adapts a streaming loader.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import torch

from ..constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

Batch = tuple[torch.Tensor, torch.Tensor]


class StepBatches(Protocol):
    def __call__(self, start_step: int) -> Iterator[Batch]: ...


class TensorBatches:
    """Batches from uint8 images (N, 3, H, W) and token ids held in memory: (N, L), or
    (N, K, L) for K captions per image, of which each epoch pairs one, at random, with the image.

    Each epoch is a permutation seeded by ``(seed, epoch)``; step ``k`` takes the ``k``-th block
    of ``batch_size * world_size`` indices of it, and rank ``r`` the ``r``-th slice of that block.
    The batch for a step is therefore a pure function of the step: resuming is exact.
    """

    def __init__(
        self,
        images: torch.Tensor,
        tokens: torch.Tensor,
        *,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if tokens.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {tokens.shape[0]} token rows")
        if tokens.ndim not in (2, 3):
            raise ValueError(f"tokens must be (N, L) or (N, K, L), got {tuple(tokens.shape)}")
        self.images, self.tokens = images, tokens
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = images.shape[0] // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{images.shape[0]} samples cannot fill one global batch of "
                f"{batch_size} x {world_size} ranks"
            )
        self.mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)

    def indices(self, step: int) -> torch.Tensor:
        """The sample indices of ``step`` for this rank."""
        return self._draw(step)[0]

    def _draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample indices of ``step`` for this rank and, with K captions, the caption of each."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.images.shape[0], generator=generator)
        block = self.batch_size * self.world_size
        start = offset * block + self.rank * self.batch_size
        idx = order[start : start + self.batch_size]
        if self.tokens.ndim == 2:
            return idx, None
        choice = torch.randint(self.tokens.shape[1], (self.images.shape[0],), generator=generator)
        return idx, choice[idx]

    def __call__(self, start_step: int) -> Iterator[Batch]:
        for step in itertools.count(start_step):
            idx, choice = self._draw(step)
            pixels = (self.images[idx].float() / 255 - self.mean) / self.std  # (B, 3, H, W)
            yield pixels, self.tokens[idx] if choice is None else self.tokens[idx, choice]


class LoaderBatches:
    """Adapts a loader factory ``make(epoch) -> iterable of batches`` to ``StepBatches``.

    Resuming at step ``k`` of an epoch re-creates that epoch's loader and skips its first ``k``
    batches: exact when the loader is deterministic for a given epoch, at the cost of decoding
    the skipped batches again.
    """

    def __init__(self, make: Callable[[int], Iterable[Batch]], steps_per_epoch: int) -> None:
        self.make, self.steps_per_epoch = make, steps_per_epoch

    def __call__(self, start_step: int) -> Iterator[Batch]:
        epoch, skip = divmod(start_step, self.steps_per_epoch)
        while True:
            # A loader's batch records unpack as the (pixels, tokens) pair of a step.
            yield from map(tuple, itertools.islice(self.make(epoch), skip, self.steps_per_epoch))
            epoch, skip = epoch + 1, 0
