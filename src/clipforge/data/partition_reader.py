"""Reading planned partitions: decode, preprocess and tokenize them in DataLoader workers.

:class:`PartitionReader` is an ``IterableDataset`` over the partitions one rank still has to
embed. Each partition is split into *units* (a batch of file samples, or one tar shard); unit
``g`` (counted over all the rank's partitions in order) is read by DataLoader worker
``g % workers``. A unit yields one or more :class:`Chunk` objects tagged with
``(partition, unit, part)``, so the main process can put every partition back in its planned
order whatever the number of workers and whatever order chunks arrive in; the last chunk of a
unit says so, which is how the main process knows a partition is complete.

A sample that cannot be used is never an exception: it becomes a ``skipped`` entry (key,
reason, detail) of the chunk and gets no row, so embedding rows and metadata rows stay aligned.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from clipforge.data.conventions import image_member
from clipforge.data.plan import FileSample, Partition
from clipforge.data.skips import SampleSkipped, SkipReason, open_sample_image
from clipforge.data.wds import parse_captions, read_shard_members

ImageTransform = Callable[[Image.Image], torch.Tensor]
TextTokenizer = Callable[[list[str]], torch.Tensor]


@dataclass
class Chunk:
    """Up to ``batch_size`` decoded samples of one unit of one partition.

    ``rows`` are the metadata rows (key, path, member, caption, json) of the decoded samples,
    ``pixels`` their preprocessed images ``(B, 3, S, S)`` float32 (None for caption-only
    collections), ``tokens`` the tokenized captions ``(C, L)`` int64 of the rows whose caption
    is not None, in row order (None when captions are not embedded). ``skipped`` and
    ``warnings`` list ``{"key", "reason", "detail"}`` for the samples dropped and for the
    problems that did not drop a sample (an unreadable caption or JSON).
    """

    partition: int
    unit: int
    units: int  # how many units the partition has
    part: int
    last: bool  # the last chunk of its unit
    rows: list[dict[str, Any]] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)

    def pin_memory(self) -> Chunk:
        """Called by ``DataLoader(pin_memory=True)`` for faster host-to-GPU copies."""
        pixels = None if self.pixels is None else self.pixels.pin_memory()
        return replace(self, pixels=pixels)


@dataclass
class _Builder:
    """Collects decoded samples of one chunk."""

    chunk: Chunk
    images: list[torch.Tensor] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)

    def add(self, row: dict[str, Any], image: torch.Tensor | None) -> None:
        self.chunk.rows.append(row)
        if image is not None:
            self.images.append(image)
        if row["caption"] is not None:
            self.captions.append(row["caption"])

    def skip(self, key: str, reason: SkipReason, detail: str) -> None:
        self.chunk.skipped.append(
            {"key": key, "reason": SkipReason(reason).value, "detail": detail}
        )

    def warn(self, key: str, reason: str, detail: str) -> None:
        self.chunk.warnings.append({"key": key, "reason": reason, "detail": detail})


class PartitionReader(IterableDataset[Chunk]):
    """Chunks of ``partitions`` for one rank; see the module docstring.

    ``images=False`` reads captions only (a caption-only table); ``tokenizer=None`` leaves
    captions untokenized (they are still kept in the metadata).
    """

    def __init__(
        self,
        partitions: list[Partition],
        *,
        transform: ImageTransform,
        tokenizer: TextTokenizer | None,
        batch_size: int,
        images: bool,
    ) -> None:
        self.partitions = partitions
        self.transform = transform
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.images = images

    def units(self, partition: Partition) -> int:
        """The number of units of ``partition``: its shards, or its batches of samples."""
        if partition.shards:
            return len(partition.shards)
        return math.ceil(len(partition.samples) / self.batch_size)

    def __iter__(self) -> Iterator[Chunk]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        counter = 0
        for partition in self.partitions:
            units = self.units(partition)
            for unit in range(units):
                if counter % workers == worker:
                    yield from self._read_unit(partition, unit, units)
                counter += 1

    def _read_unit(self, partition: Partition, unit: int, units: int) -> Iterator[Chunk]:
        if partition.shards:
            yield from self._read_shard(partition, unit, units)
            return
        start = unit * self.batch_size
        builder = self._builder(partition.index, unit, units, part=0)
        for sample in partition.samples[start : start + self.batch_size]:
            self._add_file_sample(builder, sample)
        yield self._finish(builder, last=True)

    def _builder(self, partition: int, unit: int, units: int, part: int) -> _Builder:
        return _Builder(Chunk(partition=partition, unit=unit, units=units, part=part, last=False))

    def _finish(self, builder: _Builder, *, last: bool) -> Chunk:
        chunk = builder.chunk
        chunk.last = last
        if self.images and builder.images:
            chunk.pixels = torch.stack(builder.images)  # (B, 3, S, S)
        if self.tokenizer is not None and builder.captions:
            chunk.tokens = self.tokenizer(builder.captions)  # (C, L)
        return chunk

    def _image(self, source: bytes | Path | None, name: str | None) -> torch.Tensor | None:
        """The preprocessed image ``(3, S, S)``, None in caption-only mode; :class:`SampleSkipped`
        with the reason when there is no usable image. ``name`` labels bytes in errors."""
        if not self.images:
            return None
        return self.transform(open_sample_image(source, name=name))

    def _add_file_sample(self, builder: _Builder, sample: FileSample) -> None:
        caption = sample.caption
        if sample.caption_file is not None:
            try:
                captions = parse_captions({"txt": sample.caption_file.read_bytes()}, None)
                caption = captions[0] if captions else None
            except (OSError, ValueError) as err:
                builder.warn(sample.key, "bad_caption", f"{sample.caption_file}: {err}")
        if not self.images and caption is None:
            builder.skip(sample.key, SkipReason.NO_CAPTION, "caption-only input without caption")
            return
        try:
            image = self._image(sample.path, None)
        except SampleSkipped as skip:
            builder.skip(sample.key, skip.reason, skip.detail)
            return
        path = None if sample.path is None else str(sample.path)
        row = {"key": sample.key, "path": path, "member": None, "caption": caption}
        builder.add({**row, "json": sample.json}, image)

    def _read_shard(self, partition: Partition, unit: int, units: int) -> Iterator[Chunk]:
        """The chunks of shard ``unit``: full chunks as they fill, then the last one (which
        may be empty but is always sent, to mark the unit done)."""
        shard = partition.shards[unit]
        part = 0
        builder = self._builder(partition.index, unit, units, part)
        for key, files, fault in read_shard_members(shard):
            self._add_shard_sample(builder, shard, key, files, fault)
            if len(builder.chunk.rows) == self.batch_size:
                yield self._finish(builder, last=False)
                part += 1
                builder = self._builder(partition.index, unit, units, part)
        yield self._finish(builder, last=True)

    def _add_shard_sample(
        self,
        builder: _Builder,
        shard: str,
        key: str,
        files: dict[str, tuple[str, bytes]],
        fault: tuple[SkipReason, str] | None,
    ) -> None:
        if fault is not None:
            builder.skip(key, *fault)
            return
        member, data = image_member(files) or (None, None)
        try:
            captions = parse_captions({ext: data for ext, (_, data) in files.items()}, None)
        except ValueError as err:
            captions = ()
            builder.warn(key, "bad_caption", str(err))
        caption = captions[0] if captions else None
        if not self.images and caption is None:
            builder.skip(key, SkipReason.NO_CAPTION, "no caption")
            return
        try:
            image = self._image(data, f"{shard}:{key}")
        except SampleSkipped as skip:
            builder.skip(key, skip.reason, skip.detail)
            return
        text = None
        if "json" in files:
            try:
                text = files["json"][1].decode("utf-8")
                json.loads(text)
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                text = None
                builder.warn(key, "bad_json", f".json does not parse ({err})")
        row = {"key": key, "path": shard, "member": member, "caption": caption, "json": text}
        builder.add(row, image)
