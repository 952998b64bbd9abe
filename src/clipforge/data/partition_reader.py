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
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from clipforge.data.conventions import image_member
from clipforge.data.plan import FileSample, Partition
from clipforge.data.skips import SampleSkipped, SkipReason, open_sample_image
from clipforge.data.stream import ImageTransform, TextTokenizer, pin_tensors
from clipforge.data.wds import MemberFault, parse_captions, read_shard_members

Row = dict[str, Any]
Note = dict[str, str]


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
    last: bool = False  # the last chunk of its unit
    rows: list[Row] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    skipped: list[Note] = field(default_factory=list)
    warnings: list[Note] = field(default_factory=list)

    def pin_memory(self) -> Chunk:
        """Called by ``DataLoader(pin_memory=True)``."""
        return pin_tensors(self)


def _note(key: str, reason: str, detail: str) -> Note:
    return {"key": key, "reason": reason, "detail": detail}


@dataclass(eq=False)
class PartitionReader(IterableDataset[Chunk]):
    """Chunks of ``partitions`` for one rank; see the module docstring.

    ``images=False`` reads captions only (a caption-only table); ``tokenizer=None`` leaves
    captions untokenized (they are still kept in the metadata).
    """

    partitions: list[Partition]
    _: KW_ONLY
    transform: ImageTransform
    tokenizer: TextTokenizer | None
    batch_size: int
    images: bool

    def __iter__(self) -> Iterator[Chunk]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        counter = 0
        for partition in self.partitions:
            units = len(partition.shards) or math.ceil(len(partition.samples) / self.batch_size)
            for unit in range(units):
                if counter % workers == worker:
                    yield from self._read_unit(partition, unit, units)
                counter += 1

    def _read_unit(self, partition: Partition, unit: int, units: int) -> Iterator[Chunk]:
        """The chunks of one unit (a batch of file samples fills one), each sent once full;
        the last one, which may be empty, is always sent: it marks the unit done."""
        if partition.shards:
            shard = partition.shards[unit]
            reads = (
                partial(self._shard_sample, shard, *item) for item in read_shard_members(shard)
            )
        else:
            start = unit * self.batch_size
            samples = partition.samples[start : start + self.batch_size]
            reads = (partial(self._file_sample, sample) for sample in samples)
        chunk, images = Chunk(partition.index, unit, units, part=0), []
        for read in reads:
            if len(chunk.rows) == self.batch_size:
                yield self._finish(chunk, images)
                chunk, images = Chunk(partition.index, unit, units, part=chunk.part + 1), []
            try:
                row, image = read(chunk.warnings)
            except SampleSkipped as skip:
                chunk.skipped.append(_note(skip.sample_id, skip.reason.value, skip.detail))
                continue
            chunk.rows.append(row)
            images.append(image)
        chunk.last = True
        yield self._finish(chunk, images)

    def _finish(self, chunk: Chunk, images: list[torch.Tensor | None]) -> Chunk:
        captions = [row["caption"] for row in chunk.rows if row["caption"] is not None]
        if self.images and images:
            chunk.pixels = torch.stack(images)  # (B, 3, S, S)
        if self.tokenizer is not None and captions:
            chunk.tokens = self.tokenizer(captions)  # (C, L)
        return chunk

    def _with_image(
        self, row: Row, source: bytes | Path | None, name: str | None = None
    ) -> tuple[Row, torch.Tensor | None]:
        """``row`` and its preprocessed image ``(3, S, S)``, None in caption-only mode;
        :class:`SampleSkipped` for the row's key when the sample has nothing to embed.
        ``name`` labels bytes in errors."""
        if not self.images:
            if row["caption"] is None:
                raise SampleSkipped(
                    SkipReason.NO_CAPTION, "caption-only input without caption", row["key"]
                )
            return row, None
        try:
            return row, self.transform(open_sample_image(source, name=name))
        except SampleSkipped as skip:
            raise SampleSkipped(skip.reason, skip.detail, row["key"]) from None

    def _file_sample(
        self, sample: FileSample, warnings: list[Note]
    ) -> tuple[Row, torch.Tensor | None]:
        """The metadata row and image of a folder or table sample (see :meth:`_with_image`)."""
        caption = sample.caption
        if sample.caption_file is not None:
            try:
                captions = parse_captions({"txt": sample.caption_file.read_bytes()}, None)
                caption = captions[0] if captions else None
            except (OSError, ValueError) as err:
                warnings.append(_note(sample.key, "bad_caption", f"{sample.caption_file}: {err}"))
        path = None if sample.path is None else str(sample.path)
        row = {"key": sample.key, "path": path, "member": None, "caption": caption}
        return self._with_image({**row, "json": sample.json}, sample.path)

    def _shard_sample(
        self,
        shard: str,
        key: str,
        files: dict[str, tuple[str, bytes]],
        fault: MemberFault | None,
        warnings: list[Note],
    ) -> tuple[Row, torch.Tensor | None]:
        """The metadata row and image of a shard sample (see :meth:`_with_image`)."""
        if fault is not None:
            raise SampleSkipped(*fault, key)
        member, data = image_member(files) or (None, None)
        try:
            captions = parse_captions({ext: content for ext, (_, content) in files.items()}, None)
        except ValueError as err:
            captions = ()
            warnings.append(_note(key, "bad_caption", str(err)))
        caption = captions[0] if captions else None
        row = {"key": key, "path": shard, "member": member, "caption": caption, "json": None}
        row, image = self._with_image(row, data, f"{shard}:{key}")
        if "json" in files:
            try:
                row["json"] = files["json"][1].decode("utf-8")
                json.loads(row["json"])
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                row["json"] = None
                warnings.append(_note(key, "bad_json", f".json does not parse ({err})"))
        return row, image
