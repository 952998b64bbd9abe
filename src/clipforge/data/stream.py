"""Raw samples in, batches out: decoding, augmentation, tokenisation, skips and batching.

A source (tar shards in :mod:`clipforge.data.wds`, a table in :mod:`clipforge.data.tables`) only
*reads*: it turns an epoch and a stream slot into undecoded :class:`RawSample` records. The rest
is the same for every source: each DataLoader worker of each rank plays one *stream slot* of
:class:`ImageTextStream`, which decodes its share, skips and counts the broken samples, and
yields :class:`Batch` objects that also carry the skip counts to the main process.

Every random choice (shard order, shuffle buffer, caption, augmentation) is drawn from a seed
computed by :func:`stable_seed` from ``(seed, epoch, ...)``, never from process-global state, so
what a slot produces is a pure function of ``(seed, epoch, rank, slot)``: neither the process a
slot runs in nor a resume changes a pixel.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from clipforge.data.skips import SampleSkipped, SkipReason, SkipStats, open_sample_image

ImageTransform = Callable[[Image.Image], torch.Tensor]
TextTokenizer = Callable[[list[str]], torch.Tensor]

R = TypeVar("R")


@dataclass(frozen=True)
class RawSample:
    """One image-text pair as read, before decoding.

    ``key`` identifies the sample inside its ``origin`` (a tar member key, a table's image
    path cell); ``image`` is the encoded bytes (tars) or a file path (tables), ``None`` when
    the sample has none; ``captions`` holds every candidate caption; ``fault`` is set when
    reading already failed, as ``(reason, detail)``.
    """

    key: str
    origin: str
    image: bytes | Path | None
    captions: tuple[str, ...]
    fault: tuple[SkipReason, str] | None = None

    @property
    def sample_id(self) -> str:
        """``origin:key``, the name used in logs, skip examples and :attr:`Batch.keys`."""
        return f"{self.origin}:{self.key}"

    @property
    def seed_id(self) -> str:
        """Like :attr:`sample_id` but without the origin's folder, so that seeds drawn from it
        do not change when the data is moved or mounted elsewhere."""
        return f"{Path(self.origin).name}:{self.key}"


class SampleSource(Protocol):
    """What :class:`clipforge.data.stream.ImageTextStream` needs from a source."""

    name: str  # how errors and logs name the source: its urls or path

    def samples(
        self, *, epoch: int, seed: int, stream: int, streams: int, shuffle: bool
    ) -> Iterator[RawSample]:
        """The raw samples of slot ``stream`` out of ``streams`` (all ranks' DataLoader
        workers together) for ``epoch``; a finite source gives each to exactly one slot."""
        ...


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (ints and strings), equal in every process and run.

    Python's ``hash`` of strings is salted per process, so it cannot be used to derive seeds
    in DataLoader workers; a cryptographic digest of the parts' ``repr`` can.
    """
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def epoch_order(count: int, *, seed: int, epoch: int, shuffle: bool, salt: str) -> list[int]:
    """``range(count)`` in this epoch's order: a permutation drawn from ``(seed, epoch, salt)``
    when ``shuffle``, else the identity. Every rank and worker computes the same order, so
    taking ``order[stream::streams]`` partitions the items across all of them."""
    order = list(range(count))
    if shuffle:
        random.Random(stable_seed(seed, epoch, salt)).shuffle(order)
    return order


def choose_caption(captions: Sequence[str], *, seed: int, epoch: int, sample_id: str) -> str:
    """One of a sample's captions, drawn from ``(seed, epoch, sample_id)``.

    Datasets with rewritten captions (LaCLIP, VeCLIP) store several per image and train on a
    different one each epoch; tying the draw to the epoch and the sample rather than to a
    running RNG keeps it identical whatever the worker count, order or resume point.
    """
    return captions[stable_seed(seed, epoch, "caption", sample_id) % len(captions)]


def pin_tensors(record: R) -> R:
    """A copy of the dataclass ``record`` with every tensor field in pinned memory (faster
    host-to-GPU copies), for the records' ``pin_memory``."""
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    pinned = {k: v.pin_memory() for k, v in values.items() if isinstance(v, torch.Tensor)}
    return replace(record, **pinned)


class BatchRecord:
    """Base of the batch dataclasses DataLoader workers send (:class:`Batch`, the evaluation
    loader's ``LabelBatch`` and ``CaptionBatch``): a record with ``keys`` naming its samples,
    which unpacks as the fields named in ``unpacks``."""

    unpacks: ClassVar[tuple[str, ...]]

    def __iter__(self) -> Iterator[Any]:
        return (getattr(self, name) for name in self.unpacks)

    @property
    def size(self) -> int:
        """``B``, the number of samples (0 for a record that only carries skips)."""
        return len(self.keys)

    def pin_memory(self: R) -> R:
        """Called by ``DataLoader(pin_memory=True)``."""
        return pin_tensors(self)


@dataclass(frozen=True)
class Batch(BatchRecord):
    """One batch: ``pixels`` float32 ``(B, 3, H, W)`` and ``tokens`` int64 ``(B, L)``.

    It unpacks as ``pixels, tokens = batch``; ``keys`` names the ``B`` samples (``origin:key``),
    ``skips`` counts those the slot skipped since its previous batch (for the loader's stats).
    """

    unpacks: ClassVar[tuple[str, ...]] = ("pixels", "tokens")

    pixels: torch.Tensor  # (B, 3, H, W) float32
    tokens: torch.Tensor  # (B, L) int64
    keys: tuple[str, ...]
    skips: SkipStats


@dataclass(eq=False, kw_only=True)
class ImageTextStream(IterableDataset[Batch]):
    """Batches of ``(pixels, tokens)`` from a source, for one rank.

    ``streams`` is the number of slots on this rank: the DataLoader's ``num_workers``, or 1
    with ``num_workers=0``. Slot ``s`` of rank ``r`` reads part ``r * streams + s`` of the
    source split in ``world_size * streams`` parts. A slot yields full batches of
    ``batch_size`` until its share runs out (one last partial batch), or exactly
    ``batches_per_stream`` batches when set (resampled mode). ``transform`` must draw its
    randomness from torch's global RNG (``generator=None``): it is seeded per sample here.
    """

    source: SampleSource
    transform: ImageTransform
    tokenizer: TextTokenizer
    batch_size: int
    seed: int
    rank: int
    world_size: int
    streams: int
    shuffle: bool
    batches_per_stream: int | None
    max_skip_rate: float
    min_samples: int
    epoch: int

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if workers != self.streams:
            raise ValueError(
                f"ImageTextStream for {self.source.name} was built for {self.streams} workers "
                f"but runs in a DataLoader with {workers}: build it with workers={workers}"
            )
        return self.batches(worker)

    def batches(self, stream: int) -> Iterator[Batch]:
        """The batches of slot ``stream`` (0 to ``streams - 1``) in this epoch."""
        remaining = self.batches_per_stream or math.inf
        raw = self.source.samples(
            epoch=self.epoch,
            seed=self.seed,
            stream=self.rank * self.streams + stream,
            streams=self.world_size * self.streams,
            shuffle=self.shuffle,
        )
        pending: list[tuple[str, torch.Tensor, str]] = []
        delta, totals = SkipStats(), SkipStats()
        for sample in raw:
            delta.seen += 1
            totals.seen += 1
            try:
                pending.append(self._decode(sample))
            except SampleSkipped as skip:
                # The slot's own totals fail a worker reading only broken data without waiting
                # for a batch to reach the main process.
                where = f"rank {self.rank}, slot {stream}"
                delta.add(skip.reason, sample.sample_id)
                totals.add(
                    skip.reason, sample.sample_id, f"{skip.detail} (epoch {self.epoch}, {where})"
                )
                totals.check(
                    source=f"{self.source.name} ({where})",
                    max_rate=self.max_skip_rate,
                    min_samples=self.min_samples,
                )
            if len(pending) == self.batch_size:
                yield self._collate(pending, delta)
                pending, delta, remaining = [], SkipStats(), remaining - 1
                if remaining == 0:
                    return
        if pending or delta.seen:
            # The last partial batch, or (no samples left) a record carrying the last skips.
            yield self._collate(pending, delta)

    def _decode(self, sample: RawSample) -> tuple[str, torch.Tensor, str]:
        """``(sample_id, pixels (3, H, W), caption)``, or :class:`SampleSkipped` with the reason."""
        if sample.fault is not None:
            raise SampleSkipped(*sample.fault)
        if sample.image is not None and not sample.captions:
            raise SampleSkipped(SkipReason.NO_CAPTION, "no caption, or only empty ones")
        img = open_sample_image(sample.image, name=sample.sample_id)
        seed_id = sample.seed_id
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(
                stable_seed(self.seed, self.epoch, "augment", seed_id)
            )
            pixels = self.transform(img)  # (3, H, W)
        caption = choose_caption(
            sample.captions, seed=self.seed, epoch=self.epoch, sample_id=seed_id
        )
        return sample.sample_id, pixels, caption

    def _collate(self, items: Sequence[tuple[str, torch.Tensor, str]], skips: SkipStats) -> Batch:
        if items:
            pixels = torch.stack([pixels for _, pixels, _ in items])  # (B, 3, H, W)
            tokens = self.tokenizer([caption for _, _, caption in items])  # (B, L)
        else:
            pixels, tokens = torch.empty(0, 3, 0, 0), torch.empty(0, 0, dtype=torch.long)
        return Batch(
            pixels=pixels,
            tokens=tokens,
            keys=tuple(sample_id for sample_id, _, _ in items),
            skips=skips,
        )
