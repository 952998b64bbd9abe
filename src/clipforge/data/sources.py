"""The raw-sample interface shared by every image-text source, and its seeding helpers.

A source (tar shards, a table) only *reads*: it turns an epoch and a stream slot into an
ordered stream of :class:`RawSample` records, still undecoded. Decoding, augmentation,
tokenisation, skip accounting and batching are the same for every source and live in
:mod:`clipforge.data.stream`.

Every random choice (shard order, shuffle buffer, caption, augmentation) is drawn from a seed
computed by :func:`stable_seed` from ``(seed, epoch, ...)``, never from process-global state, so
a stream is a pure function of its arguments, identical in every process and on every run.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clipforge.data.skips import SkipReason


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
        workers together) for ``epoch``.

        Finite sources must give each sample to exactly one slot per epoch.
        """
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
    if len(captions) == 1:
        return captions[0]
    return captions[stable_seed(seed, epoch, "caption", sample_id) % len(captions)]
