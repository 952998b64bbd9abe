"""The one entry point for image-text training data: :func:`build_image_text_loader`.

It turns a :class:`~clipforge.data.spec.DataSpec` into an :class:`ImageTextLoader`, an iterable
of :class:`~clipforge.data.stream.Batch` for one rank that

* shards the data across ranks and DataLoader workers (finite mode: each shard or table row
  goes to exactly one (rank, worker) per epoch; resampled mode: shards drawn with replacement
  from per-(rank, worker) seeds);
* shuffles per epoch (``set_epoch``), deterministically given ``(seed, epoch)``;
* gathers the workers' skip counts into :attr:`ImageTextLoader.stats` and raises
  :class:`~clipforge.data.skips.DataError` once the skip rate passes ``max_skip_rate``.

An epoch's batches are a pure function of the arguments, so training resumes by rebuilding
the epoch and skipping the batches done (:class:`clipforge.train.batches.LoaderBatches`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from clipforge.data.skips import DataError, SkipStats
from clipforge.data.sources import SampleSource, stable_seed
from clipforge.data.spec import DataSpec, expand_urls
from clipforge.data.stream import (
    Batch,
    ImageTextStream,
    ImageTransform,
    TextTokenizer,
    check_loader_options,
)
from clipforge.data.tables import ImageTextTable
from clipforge.data.wds import WebDatasetSource

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ImageTextLoader:
    """Batches of one rank for one epoch at a time; see the module docstring.

    Iterating gives :class:`Batch` objects (``pixels, tokens = batch`` works) of the epoch
    ``dataset.epoch`` (:meth:`set_epoch`), from its start. DataLoader workers are started for
    each pass (not persistent), which is how the epoch reaches them. Batch ``i`` of an epoch
    comes from worker ``i % workers`` for as long as every worker still has data.
    """

    dataset: ImageTextStream
    workers: int
    stats: SkipStats = field(default_factory=SkipStats)

    @property
    def num_batches(self) -> int | None:
        """Batches per epoch on this rank when fixed (resampled mode with ``num_samples``),
        else ``None``: in finite mode it depends on how many samples turn out broken."""
        per_stream = self.dataset.batches_per_stream
        return None if per_stream is None else per_stream * self.dataset.streams

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next pass reads."""
        self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        stream = self.dataset
        delivered = 0
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=self.workers,
            # DataLoader draws worker base seeds from this generator instead of consuming
            # the caller's global RNG.
            generator=torch.Generator().manual_seed(
                stable_seed(stream.seed, stream.epoch, "loader", stream.rank)
            ),
        )
        for batch in loader:
            self.stats.merge(batch.skips)
            self.stats.check(
                source=stream.source.name,
                max_rate=stream.max_skip_rate,
                min_samples=stream.min_samples,
            )
            if batch.size == 0:
                continue
            delivered += 1
            yield batch
        if delivered == 0:
            raise DataError(
                f"data source {stream.source.name}: no usable sample on rank {stream.rank} in "
                f"epoch {stream.epoch} ({self.stats.summary()})"
            )


def _build_source(
    spec: DataSpec, *, resampled: bool, shuffle_buffer: int, slots: int
) -> SampleSource:
    if spec.num_samples is not None and not resampled:
        raise ValueError(
            f"DataSpec.num_samples={spec.num_samples} sets the epoch length of resampled mode; "
            "finite mode reads every sample once per epoch (pass resampled=True)"
        )
    if spec.kind == "csv":
        if resampled:
            raise ValueError(f"table {spec.urls!r}: resampled mode is for webdataset shards")
        return ImageTextTable(
            spec.urls.strip(),
            image_root=spec.image_root,
            image_column=spec.image_column,
            caption_columns=spec.caption_columns,
        )
    if spec.weights is not None and not resampled:
        raise ValueError(
            f"DataSpec.weights={spec.weights} mix sources by sampling shards with replacement: "
            "pass resampled=True"
        )
    sources = expand_urls(spec.urls)
    shards = sum(len(source) for source in sources)
    if not resampled and shards < slots:
        logger.warning(
            "%s: %d shards for %d (rank, worker) slots; %d slots get no data this epoch",
            spec.urls, shards, slots, slots - shards,
        )  # fmt: skip
    return WebDatasetSource(
        sources,
        weights=spec.weights,
        resampled=resampled,
        shuffle_buffer=shuffle_buffer,
        caption_field=spec.caption_field,
        name=spec.urls,
    )


def build_image_text_loader(
    spec: DataSpec,
    *,
    transform: ImageTransform,
    tokenizer: TextTokenizer,
    batch_size: int,
    workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    resampled: bool = False,
    shuffle: bool = True,
    shuffle_buffer: int = 1000,
    max_skip_rate: float = 0.1,
    min_samples: int = 100,
) -> ImageTextLoader:
    """The loader of ``(pixels (B, 3, H, W) float32, tokens (B, L) int64)`` batches for one rank.

    ``transform`` maps a PIL image to ``(3, H, W)`` (e.g. ``image_transform(cfg, is_train=True)``
    with ``generator=None``: the stream seeds torch's RNG per sample); ``tokenizer`` maps a list
    of ``B`` captions to ``(B, L)``. ``shuffle`` shuffles shard/row order per epoch and passes
    shard samples through a buffer of ``shuffle_buffer``; turn it off for evaluation.
    ``resampled`` (webdataset only) draws shards with replacement, mixing sources by
    ``spec.weights``; the epoch is then ``spec.num_samples`` samples over all ranks, rounded up
    to whole batches per worker, or endless without it. Skips above ``max_skip_rate`` of the
    samples seen, once ``min_samples`` have been seen, raise :class:`DataError`.
    """
    check_loader_options(
        "build_image_text_loader",
        max_skip_rate=max_skip_rate,
        batch_size=(batch_size, 1),
        workers=(workers, 0),
        world_size=(world_size, 1),
        shuffle_buffer=(shuffle_buffer, 0),
        min_samples=(min_samples, 1),
        rank=(rank, 0),
    )
    if rank >= world_size:
        raise ValueError(f"build_image_text_loader: rank={rank!r} must be in [0, {world_size})")
    streams = max(1, workers)
    source = _build_source(
        spec, resampled=resampled, shuffle_buffer=shuffle_buffer, slots=streams * world_size
    )
    batches_per_stream = None
    if resampled and spec.num_samples is not None:
        global_batches = math.ceil(spec.num_samples / (batch_size * world_size))
        batches_per_stream = math.ceil(global_batches / streams)
    stream = ImageTextStream(
        source=source,
        transform=transform,
        tokenizer=tokenizer,
        batch_size=batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        streams=streams,
        shuffle=shuffle,
        batches_per_stream=batches_per_stream,
        max_skip_rate=max_skip_rate,
        min_samples=min_samples,
        epoch=epoch,
    )
    return ImageTextLoader(stream, workers)
