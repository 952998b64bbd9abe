"""Webdataset shards in the img2dataset layout, read with :mod:`tarfile`.

Reading the tars directly (rather than through the ``webdataset`` pipeline) gives exact control
over two things training depends on: which (rank, worker) reads which shard, and what happens
to each broken member (counted under a reason, never an exception that a handler swallows).

A shard holds members named ``{key}.{ext}``; consecutive members with the same key form one
sample. As in webdataset, the key is the member path up to the first ``.`` of its basename and
the extension is the rest, lowercased (``a/b.c.jpg`` -> key ``a/b``, extension ``c.jpg``).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from braceexpand import braceexpand

from clipforge.data.conventions import image_member
from clipforge.data.skips import DataError, SkipReason
from clipforge.data.stream import RawSample, epoch_order, stable_seed

logger = logging.getLogger(__name__)

T = TypeVar("T")
SOURCE_SEPARATOR = "::"


def split_member_name(name: str) -> tuple[str, str]:
    """``(key, extension)`` of a tar member name, webdataset style."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def parse_captions(files: dict[str, bytes], caption_field: str | None) -> tuple[str, ...]:
    """The candidate captions of a sample: the non-empty lines of its ``.txt`` member, or the
    ``caption_field`` entry (a string or a list of strings) of its ``.json`` member.

    Returns ``()`` when the member or field is absent; raises ``ValueError`` with the reason
    when it is present but unreadable (not UTF-8, not JSON, not strings).
    """
    if caption_field is None:
        if "txt" not in files:
            return ()
        try:
            text = files["txt"].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f".txt is not UTF-8 ({err})") from err
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    if "json" not in files:
        return ()
    try:
        meta = json.loads(files["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f".json does not parse ({err})") from err
    value = meta.get(caption_field) if isinstance(meta, dict) else None
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError(f".json field {caption_field!r} is not a string or a list of strings")
    return tuple(v.strip() for v in values if v.strip())


MemberFault = tuple[SkipReason, str]


def read_shard_members(
    shard: str,
) -> Iterator[tuple[str, dict[str, tuple[str, bytes]], MemberFault | None]]:
    """``(key, {extension: (member name, bytes)}, fault)`` for each sample of a tar shard, in
    member order.

    Broken input never raises: a member that cannot be read marks its sample with a
    ``bad_member`` fault; an archive that breaks off (truncated, corrupt) ends the shard, the
    sample in progress getting the fault; a shard that cannot be opened at all yields one
    ``bad_shard`` sample keyed ``<shard>``. Directory entries are not samples and are ignored.
    """
    key: str | None = None
    files: dict[str, tuple[str, bytes]] = {}
    fault: MemberFault | None = None
    try:
        # "r|*": sequential reading (no seeks, fast on network filesystems), any compression.
        with tarfile.open(shard, mode="r|*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                member_key, extension = split_member_name(member.name)
                if member_key != key:
                    if key is not None:
                        yield key, files, fault
                    key, files, fault = member_key, {}, None
                try:
                    handle = tar.extractfile(member)
                    if handle is None:
                        raise tarfile.StreamError(f"member type {member.type!r} holds no data")
                    files[extension] = (member.name, handle.read())
                except (tarfile.TarError, OSError, EOFError) as err:
                    fault = fault or (SkipReason.BAD_MEMBER, f"member {member.name!r}: {err}")
    except (tarfile.TarError, OSError, EOFError) as err:
        if key is None:
            detail = f"cannot read shard: {type(err).__name__}: {err}"
            yield "<shard>", {}, (SkipReason.BAD_SHARD, detail)
            return
        fault = fault or (SkipReason.BAD_MEMBER, f"archive breaks off: {err}")
    if key is not None:
        yield key, files, fault


def read_shard(shard: str, *, caption_field: str | None = None) -> Iterator[RawSample]:
    """The samples of one tar shard in member order, faults as :func:`read_shard_members`
    gives them; unreadable captions make a ``no_caption`` fault."""
    for key, members, fault in read_shard_members(shard):
        files = {extension: data for extension, (_, data) in members.items()}
        try:
            captions = parse_captions(files, caption_field)
        except ValueError as err:
            captions = ()
            fault = fault or (SkipReason.NO_CAPTION, str(err))
        yield RawSample(key, shard, image_member(files), captions, fault)


def expand_urls(urls: str) -> list[list[str]]:
    """Brace-expand each ``::``-separated source of ``urls`` into its list of shard paths.

    ``"/d/{000..002}.tar::/e/x.tar"`` gives ``[["/d/000.tar", "/d/001.tar", "/d/002.tar"],
    ["/e/x.tar"]]``. Only local paths are supported: a missing shard, a remote URL or an
    empty source raises :class:`DataError` naming it.
    """
    expanded: list[list[str]] = []
    for source in (part.strip() for part in urls.split(SOURCE_SEPARATOR)):
        if not source:
            raise DataError(f"shard urls {urls!r}: empty source between {SOURCE_SEPARATOR!r}")
        if "://" in source or source.startswith("pipe:"):
            raise DataError(
                f"shard source {source!r}: only local paths are supported (mount remote storage)"
            )
        shards = list(braceexpand(source))
        missing = [shard for shard in shards if not Path(shard).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DataError(
                f"shard source {source!r}: {len(missing)} of {len(shards)} shards not found "
                f"({shown})"
            )
        expanded.append(shards)
    return expanded


def shuffled(items: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """Shuffle a stream through a buffer of ``size`` items (``size <= 1``: unchanged).

    Shards hold samples in crawl order, often grouped by site; the buffer mixes neighbouring
    shards without holding a whole epoch in memory.
    """
    if size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


class WebDatasetSource:
    """Tar shards from one or more sources, read finitely or resampled.

    Finite mode (``resampled=False``): each epoch, the shards of all sources are put in one
    order (shuffled from ``(seed, epoch)`` when ``shuffle``) and slot ``i`` of ``n`` reads
    shards ``i, i + n, ...``, so every shard is read by exactly one slot per epoch.

    Resampled mode: each slot draws shards with replacement, forever, from its own RNG seeded
    by ``(seed, epoch, slot)``; a source with weight ``w`` and ``k`` shards gives each of its
    shards probability proportional to ``w / k``, so the sources contribute samples in the
    ratio of their weights (exactly so when shards hold equal numbers of samples). Without
    weights every shard is equally likely.

    With ``shuffle``, samples pass through a buffer of ``shuffle_buffer`` samples per slot.
    ``sources`` (from :func:`expand_urls`) and the options arrive checked by the loader.
    """

    def __init__(
        self,
        sources: Sequence[Sequence[str]],
        *,
        weights: Sequence[float] | None = None,
        resampled: bool = False,
        shuffle_buffer: int = 1000,
        caption_field: str | None = None,
        name: str,
    ) -> None:
        self.shards: list[str] = [shard for source in sources for shard in source]
        # Without weights (None), rng.choices makes every shard equally likely.
        self.shard_weights = weights and [
            w / len(source) for w, source in zip(weights, sources, strict=True) for _ in source
        ]
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.caption_field = caption_field
        self.name = name

    def samples(
        self, *, epoch: int, seed: int, stream: int, streams: int, shuffle: bool
    ) -> Iterator[RawSample]:
        """See :meth:`clipforge.data.stream.SampleSource.samples`."""
        if self.resampled:
            draw = random.Random(stable_seed(seed, epoch, "resample", stream))
            shards: Iterable[str] = (
                draw.choices(self.shards, weights=self.shard_weights)[0] for _ in itertools.count()
            )
        else:
            order = epoch_order(
                len(self.shards), seed=seed, epoch=epoch, shuffle=shuffle, salt="shards"
            )
            shards = [self.shards[i] for i in order[stream::streams]]
        items = itertools.chain.from_iterable(
            read_shard(shard, caption_field=self.caption_field) for shard in shards
        )
        if shuffle:
            rng = random.Random(stable_seed(seed, epoch, "buffer", stream))
            items = shuffled(items, self.shuffle_buffer, rng)
        return items
