"""What data to read: the typed :class:`DataSpec` and the expansion of shard patterns.

A spec names *where* the pairs are and how they are laid out; *how* they are read (batch size,
workers, ranks, seed) are arguments of :func:`clipforge.data.loader.build_image_text_loader`,
because the same data is read differently by training, evaluation and embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from braceexpand import braceexpand

from clipforge.data.skips import DataError
from clipforge.typed_config import check_ints

KINDS: tuple[str, ...] = ("wds", "csv")
SOURCE_SEPARATOR = "::"


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """A typed, self-validating description of an image-text data source.

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
        if self.kind not in KINDS:
            raise ValueError(f"DataSpec.kind={self.kind!r} must be one of {list(KINDS)}")
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
        if self.num_samples is not None:
            check_ints("DataSpec.", num_samples=(self.num_samples, 1))


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
