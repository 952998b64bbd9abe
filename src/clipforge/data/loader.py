"""The one entry point for image-text training data: :func:`build_image_text_loader`.

It turns a :class:`DataSpec` into an :class:`ImageTextLoader`: one rank's
:class:`~clipforge.data.stream.Batch` objects for one epoch, made by DataLoader workers that
each play a stream slot (:mod:`clipforge.data.stream`), their skip counts gathered into
:attr:`ImageTextLoader.stats`. An epoch's batches are a pure function of the arguments, so
training resumes by rebuilding the epoch and skipping the batches done
(:class:`clipforge.train.batches.LoaderBatches`).
"""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from clipforge.data.skips import DataError, SkipStats
from clipforge.data.stream import (
    Batch,
    ImageTextStream,
    ImageTransform,
    SampleSource,
    TextTokenizer,
    stable_seed,
)
from clipforge.data.tables import ImageTextTable
from clipforge.data.wds import SOURCE_SEPARATOR, WebDatasetSource, expand_urls
from clipforge.typed_config import check

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("wds", "csv")


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """Where the image-text pairs are and how they are laid out (how they are read: batch
    size, workers, ranks, seed, are the arguments of :func:`build_image_text_loader`).

    * ``kind="wds"``: webdataset shards in the img2dataset layout (``{key}.jpg|png|webp``,
      ``{key}.txt``, ``{key}.json`` in ``NNNNN.tar``). ``urls`` holds brace patterns such as
      ``"/data/{00000..00009}.tar"``; several sources are joined with ``::``
      (``"a/{0..9}.tar::b/{0..3}.tar"``) and may be mixed with ``weights`` (one per source,
      the share of samples each source contributes; resampled mode only). Captions come from
      the ``.txt`` member (one caption per non-empty line) or, when ``caption_field`` is set,
      from that field of the ``.json`` member (a string or a list of strings).
    * ``kind="csv"``: one table, ``.csv``, ``.tsv`` or ``.parquet`` (by suffix; parquet needs
      ``pyarrow``), whose ``image_column`` holds image paths relative to ``image_root``
      (default: the table's folder) and whose ``caption_columns`` hold captions (one per
      column; empty cells are ignored).

    ``num_samples`` sets the epoch length in resampled mode (all ranks together).
    """

    kind: str
    urls: str = ""
    weights: tuple[float, ...] | None = None
    image_root: str | None = None
    image_column: str = "filepath"
    caption_columns: tuple[str, ...] = ("caption",)
    caption_field: str | None = None
    num_samples: int | None = None

    def __post_init__(self) -> None:
        check(KINDS, "DataSpec.", kind=self.kind)
        if not isinstance(self.urls, str):
            raise ValueError(
                f"DataSpec.urls={self.urls!r} must be a string (join sources with "
                f"{SOURCE_SEPARATOR!r})"
            )
        if not self.urls.strip():
            raise ValueError(f"DataSpec(kind={self.kind!r}) needs urls (shard patterns or a table)")
        sources = len(self.urls.split(SOURCE_SEPARATOR))
        if self.kind == "csv" and sources != 1:
            raise ValueError(f"DataSpec(kind='csv') takes one table, got urls={self.urls!r}")
        if self.kind != "wds" and (self.weights is not None or self.caption_field is not None):
            raise ValueError(
                f"DataSpec(kind={self.kind!r}): weights and caption_field apply to kind='wds' only"
            )
        if self.kind != "csv" and self.image_root is not None:
            raise ValueError(f"DataSpec(kind={self.kind!r}): image_root applies to kind='csv' only")
        if self.weights is not None:
            # Lists arrive from YAML/JSON; a tuple keeps the frozen spec hashable.
            weights = tuple(float(w) for w in self.weights)
            if any(not math.isfinite(w) or w <= 0 for w in weights):
                raise ValueError(f"DataSpec.weights={self.weights!r} must all be finite and > 0")
            if len(weights) != sources:
                raise ValueError(
                    f"DataSpec.weights={self.weights!r} has {len(weights)} values but urls "
                    f"{self.urls!r} has {sources} sources"
                )
            object.__setattr__(self, "weights", weights)
        columns = tuple(self.caption_columns)
        if not columns or not all(isinstance(c, str) and c for c in columns):
            raise ValueError(
                f"DataSpec.caption_columns={self.caption_columns!r} must be non-empty column names"
            )
        object.__setattr__(self, "caption_columns", columns)
        check("count_or_none", "DataSpec.", num_samples=self.num_samples)


@dataclass(eq=False)
class ImageTextLoader:
    """Batches of one rank for one epoch; see the module docstring.

    Iterating gives the :class:`Batch` objects (``pixels, tokens = batch`` works) of the epoch
    it was built for, from its start, with DataLoader workers started for the pass. Batch ``i``
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
            worker_init_fn=ignore_interrupts,
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

    ``transform`` maps a PIL image to ``(3, H, W)`` drawing from torch's global RNG (the
    stream seeds it per sample); ``tokenizer`` maps ``B`` captions to ``(B, L)``. ``shuffle``
    shuffles shard/row order per epoch and passes shard samples through a buffer of
    ``shuffle_buffer``. ``resampled`` (webdataset only) draws shards with replacement, mixing
    sources by ``spec.weights``; the epoch is then ``spec.num_samples`` samples over all ranks,
    rounded up to whole batches per worker, or endless without it. Skips above
    ``max_skip_rate`` of the samples seen, once ``min_samples`` have been seen, raise
    :class:`DataError`.
    """
    where = "build_image_text_loader: "
    check("count", where, batch_size=batch_size, world_size=world_size, min_samples=min_samples)
    check("index", where, workers=workers, shuffle_buffer=shuffle_buffer, rank=rank)
    check("share", where, max_skip_rate=max_skip_rate)
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


def ignore_interrupts(worker_id: int = 0) -> None:
    """Let a terminal's Ctrl-C, which reaches every process of its group, stop training at a
    step boundary (:mod:`clipforge.train.stop`) instead of killing the data workers under it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
