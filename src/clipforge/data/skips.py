"""Accounting for samples that cannot be used: why each was skipped, how many, and which.

Web-scraped pairs are routinely broken (empty files, truncated JPEGs, HTML saved as ``.jpg``,
missing captions). Dropping them is right, dropping them *silently* is not: a shard written by
a buggy downloader can turn half a dataset into skips while the loss curve still looks fine.
So every skip is counted by reason with a few example sample ids, and a run stops with a
:class:`DataError` once the skip rate passes a limit. The counts travel from DataLoader
workers to the main process inside each batch (see :class:`clipforge.data.stream.Batch`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from clipforge.transforms import ImageDecodeError, load_image

logger = logging.getLogger(__name__)

# Per reason, the first few skips are logged, then only the 2**k-th.
LOG_FIRST_SKIPS = 3


class DataError(ValueError):
    """A data source is unusable: missing files, nothing to read, or too many broken samples."""


class MissingDataError(DataError, FileNotFoundError):
    """A named input (table, folder, shard) that does not exist: a :class:`DataError` for
    callers that catch data errors, a :class:`FileNotFoundError` for those that catch paths."""


class SkipReason(str, Enum):
    """Why a sample was skipped; the value is the key in :attr:`SkipStats.counts`."""

    NO_IMAGE = "no_image"  # no .jpg/.jpeg/.png/.webp member, or an empty image cell
    EMPTY_IMAGE = "empty_image"  # the image is 0 bytes
    BAD_IMAGE = "bad_image"  # the bytes do not decode: truncated, not an image, ...
    MISSING_FILE = "missing_file"  # a table row points at a file that does not exist
    NO_CAPTION = "no_caption"  # no .txt / json field / caption cell, or only whitespace
    BAD_MEMBER = "bad_member"  # a tar member cannot be read (link, archive truncated in it)
    BAD_SHARD = "bad_shard"  # a shard cannot be opened or is not a tar archive


class SampleSkipped(ValueError):
    """One sample cannot be used; ``reason`` is what the skip counts file it under.

    Every reader (training streams, evaluation sets, embedding) raises this one type, so the
    loaders that count skips catch the same thing; ``sample_id`` names the sample where the
    raiser knows it.
    """

    def __init__(self, reason: SkipReason, detail: str, sample_id: str | None = None) -> None:
        where = "" if sample_id is None else f"sample {sample_id!r}: {reason.value}: "
        super().__init__(where + detail)
        self.reason = reason
        self.detail = detail
        self.sample_id = sample_id


def open_sample_image(source: bytes | Path | None, name: str | None = None) -> Image.Image:
    """Decode a sample's image from its bytes or file; :class:`SampleSkipped` says why not
    when it is absent, missing, empty, truncated or not an image. ``name`` labels bytes in
    the error."""
    if source is None:
        raise SampleSkipped(SkipReason.NO_IMAGE, "no image member or path")
    if isinstance(source, Path):
        try:
            size = source.stat().st_size if source.is_file() else None
        except OSError:  # removed or unreadable since it was listed
            size = None
        if size is None:
            raise SampleSkipped(SkipReason.MISSING_FILE, f"image file {str(source)!r} not found")
    else:
        size = len(source)
    if size == 0:
        raise SampleSkipped(SkipReason.EMPTY_IMAGE, "image is 0 bytes")
    try:
        return load_image(source, name=name)
    except (ImageDecodeError, OSError, ValueError) as err:
        raise SampleSkipped(SkipReason.BAD_IMAGE, str(err)) from None


@dataclass
class SkipStats:
    """Samples seen and skipped, with counts and the first few sample ids per reason.

    ``seen`` counts every sample read, delivered or skipped, so ``rate = skipped / seen``.
    Objects of this class are merged (via :meth:`merge`) from per-batch deltas into run totals.
    """

    max_examples: ClassVar[int] = 5

    seen: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """Total number of skipped samples, all reasons together."""
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """``skipped / seen``, 0.0 before anything was seen."""
        return self.skipped / self.seen if self.seen else 0.0

    def add(self, reason: SkipReason, sample_id: str, detail: str | None = None) -> None:
        """Count one skip (the sample must also be counted in ``seen``). With ``detail``, log
        it too, rate-limited (the first few per reason, then the 2**k-th) so that a shard of
        broken samples cannot flood the log."""
        key = SkipReason(reason).value
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        examples = self.examples.setdefault(key, [])
        if len(examples) < self.max_examples:
            examples.append(sample_id)
        if detail is not None and (count <= LOG_FIRST_SKIPS or count & (count - 1) == 0):
            logger.warning(
                "skipped sample %r: %s: %s [%d so far for this reason]",
                sample_id,
                key,
                detail,
                count,
            )

    def merge(self, other: SkipStats) -> None:
        """Add ``other``'s numbers to these (examples are kept up to ``max_examples``)."""
        self.seen += other.seen
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        for key, ids in other.examples.items():
            examples = self.examples.setdefault(key, [])
            examples.extend(ids[: self.max_examples - len(examples)])

    def summary(self) -> str:
        """One line such as ``3 of 40 skipped (7.5%): bad_image=2 [s/1, s/2], no_caption=1 [..]``."""
        parts = [
            f"{key}={count} [{', '.join(self.examples.get(key, []))}]"
            for key, count in sorted(self.counts.items())
        ]
        head = f"{self.skipped} of {self.seen} skipped ({self.rate:.1%})"
        return f"{head}: {'; '.join(parts)}" if parts else head

    def check(self, *, source: str, max_rate: float, min_samples: int) -> None:
        """Raise :class:`DataError` naming ``source`` and the counts when more than ``max_rate``
        of the samples were skipped, once at least ``min_samples`` have been seen (before
        that a few early failures would give a meaningless rate)."""
        if self.seen >= min_samples and self.rate > max_rate:
            raise DataError(
                f"data source {source}: too many broken samples, {self.summary()}; "
                f"the limit is max_skip_rate={max_rate:g} after {min_samples} samples"
            ) from None  # raised while handling a skip, whose details were logged

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for results and logs (a deep copy)."""
        return asdict(self)
