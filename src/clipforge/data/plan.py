"""What a pass over a collection reads: its inputs resolved to samples and cut into partitions.

Embedding (:mod:`clipforge.search.embed`) plans its runs here; the samples are read by
:mod:`clipforge.data.partition_reader` with the file and column conventions of
:mod:`clipforge.data.conventions` and the table reader of :mod:`clipforge.data.tables`.

Three input formats, detected from each input (or forced with ``input_format``):

* ``folder``: a directory searched recursively for images (``.jpg .jpeg .png .webp .bmp
  .gif``, any case; hidden files and folders are ignored). An image ``a/b.jpg`` with a
  ``a/b.txt`` beside it gets that file's first non-empty line as its caption (img2dataset's
  ``files`` output format). Keys are the image paths relative to the folder.
* ``wds``: webdataset tar shards in the img2dataset layout (``{key}.jpg``, ``{key}.txt``,
  ``{key}.json``), given as paths or brace patterns (``/data/{00000..00099}.tar``).
* ``table``: a ``.csv``, ``.tsv`` or ``.parquet`` table with an image path column and/or a
  caption column. Relative paths are resolved against ``image_root`` (default: the table's
  folder). Every column of a row is kept, as JSON text, in the metadata ``json`` column.

Partitions are a pure function of the inputs and the partition settings, so a rerun (or
another rank) computes the same ones: folder and table samples, in input order and sorted
path order within a folder, are cut into runs of ``partition_size``; shards, in input order,
into runs of ``shards_per_partition``. A run reads either file inputs or shards, not both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
from collections.abc import Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import TypeVar

from clipforge.data.conventions import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    IMAGE_SUFFIXES,
    KEY_COLUMN,
    SHARD_SUFFIXES,
    TABLE_SUFFIXES,
    is_image_name,
    visible_files,
)
from clipforge.data.tables import cell_text, open_table, read_table_rows
from clipforge.data.wds import expand_urls

logger = logging.getLogger(__name__)

INPUT_FORMATS: tuple[str, ...] = ("auto", "folder", "wds", "table")

T = TypeVar("T")


@dataclass(frozen=True)
class FileSample:
    """One sample of a folder or table: where its image and caption are, before reading.

    ``path`` is the absolute image path (``None`` for a table row with an empty image cell, or
    for every row of a caption-only table); the caption is either known (``caption``, from a
    table) or in a sidecar file read by the DataLoader worker (``caption_file``).
    """

    key: str
    path: Path | None
    caption: str | None = None
    caption_file: Path | None = None
    json: str | None = None


@dataclass(frozen=True)
class Partition:
    """Partition ``index``: a run of file samples, or a run of shard paths (one is empty)."""

    index: int
    samples: tuple[FileSample, ...] = ()
    shards: tuple[str, ...] = ()


@dataclass(frozen=True)
class CollectionPlan:
    """The resolved inputs of a run and their partitions.

    ``images``/``text`` say whether the run embeds images (False only for a caption-only
    table) and captions (a caption column, sidecar ``.txt`` files, or ``.txt`` members in the
    first shard). ``fingerprint`` hashes the full partition plan, so a rerun whose inputs
    changed (an image added to a folder, a caption edited, a shard rewritten to another size)
    is told apart from a resume.
    """

    kind: str  # "files" or "wds"
    partitions: tuple[Partition, ...]
    inputs: tuple[dict[str, str], ...]  # {"input": absolute path or pattern, "format": ...}
    image_roots: tuple[str, ...]
    images: bool
    text: bool
    fingerprint: str

    @property
    def samples(self) -> int | None:
        """Number of samples of a file collection; None for shards (known only once read)."""
        return sum(len(p.samples) for p in self.partitions) if self.kind == "files" else None


@dataclass(frozen=True)
class _Resolved:
    """One input after reading its listing."""

    spec: dict[str, str]
    roots: tuple[str, ...]  # the folders its images (or shards) are in
    samples: list[FileSample]
    shards: list[str]
    images: bool
    text: bool


def detect_format(text: str) -> str:
    """``folder``, ``wds`` or ``table`` for one input, from what it is on disk and its name."""
    path = Path(text)
    name = path.name.lower()
    if name.endswith(SHARD_SUFFIXES):
        return "wds"
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in TABLE_SUFFIXES:
        return "table"
    if not path.exists():
        raise FileNotFoundError(f"embedding input {text!r} does not exist")
    raise ValueError(
        f"embedding input {text!r}: cannot tell its format; expected a folder of images, "
        f"tar shards ({', '.join(SHARD_SUFFIXES)}) or a table ({', '.join(TABLE_SUFFIXES)})"
    )


def plan_collection(
    inputs: Sequence[str | os.PathLike],
    *,
    input_format: str = "auto",
    partition_size: int,
    shards_per_partition: int,
    image_root: str | os.PathLike | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
) -> CollectionPlan:
    """Read the listings of ``inputs`` and cut them into partitions (see the module doc).
    ``image_column``/``caption_column`` name a table's columns; None picks them by name."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input_format={input_format!r} must be one of {list(INPUT_FORMATS)}")
    if isinstance(inputs, (str, os.PathLike)) or not inputs:
        raise ValueError(f"inputs={inputs!r} must be a non-empty list of paths or patterns")
    resolved = []
    for text in map(os.fspath, inputs):
        kind = detect_format(text) if input_format == "auto" else input_format
        if kind == "folder":
            resolved.append(_resolve_folder(Path(text)))
        elif kind == "table":
            resolved.append(_resolve_table(Path(text), image_root, image_column, caption_column))
        else:
            resolved.append(_resolve_shards(text))
    kinds = {"wds" if r.shards else "files" for r in resolved}
    if len(kinds) > 1:
        raise ValueError(
            "embedding inputs mix tar shards with folders/tables; embed them into separate "
            f"collections: {[r.spec for r in resolved]}"
        )
    if image_root is not None and not any(r.spec["format"] == "table" for r in resolved):
        raise ValueError(f"image_root={os.fspath(image_root)!r} applies to table inputs only")
    if len({r.images for r in resolved}) > 1:
        raise ValueError(
            "embedding inputs mix caption-only tables with image inputs: "
            f"{[r.spec['input'] for r in resolved if not r.images]}"
        )
    kind = kinds.pop()
    if kind == "files":
        samples = [s for r in resolved for s in r.samples]
        runs = _runs(samples, partition_size)
        partitions = [Partition(i, samples=run) for i, run in enumerate(runs)]
        plan: list = [[str(field) for field in astuple(s)] for s in samples]
    else:
        shards = [s for r in resolved for s in r.shards]
        runs = _runs(shards, shards_per_partition)
        partitions = [Partition(i, shards=run) for i, run in enumerate(runs)]
        plan = [[shard, _size(shard)] for shard in shards]
    digest = hashlib.blake2b(json.dumps(plan).encode("utf-8"), digest_size=16).hexdigest()
    return CollectionPlan(
        kind=kind,
        partitions=tuple(partitions),
        inputs=tuple(r.spec for r in resolved),
        image_roots=tuple(dict.fromkeys(root for r in resolved for root in r.roots)),
        images=resolved[0].images,
        text=any(r.text for r in resolved),
        fingerprint=digest,
    )


def _runs(items: list[T], size: int) -> list[tuple[T, ...]]:
    """``items`` cut into consecutive runs of ``size`` (the last one shorter)."""
    return [tuple(items[start : start + size]) for start in range(0, len(items), size)]


def _size(path: str) -> int:
    """A shard's size, or -1 if it cannot be read now (the run records it as a bad shard)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def _resolve_folder(folder: Path) -> _Resolved:
    """Every image under ``folder``, sorted by relative path, with its sidecar caption file."""
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist or is not a folder")
    root = folder.resolve()
    files = visible_files(root)
    images = [name for name in files if is_image_name(name)]
    texts = {name[: -len(".txt")] for name in files if name.lower().endswith(".txt")}
    if not images:
        tars = sum(name.lower().endswith(SHARD_SUFFIXES) for name in files)
        hint = f"; it holds {tars} tar shards: pass them as a pattern" if tars else ""
        raise ValueError(
            f"image folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}"
        )
    samples = []
    for relative in images:
        stem = os.path.splitext(relative)[0]
        caption_file = root / f"{stem}.txt" if stem in texts else None
        samples.append(FileSample(key=relative, path=root / relative, caption_file=caption_file))
    spec = {"input": str(root), "format": "folder"}
    return _Resolved(spec, (str(root),), samples, [], images=True, text=bool(texts))


def _resolve_shards(pattern: str) -> _Resolved:
    """The shards of one path or brace pattern, made absolute."""
    absolute = pattern if os.path.isabs(pattern) else os.path.join(os.getcwd(), pattern)
    shards = [os.path.normpath(s) for group in expand_urls(absolute) for s in group]
    bad = [s for s in shards if not s.lower().endswith(SHARD_SUFFIXES)]
    if bad:
        raise ValueError(
            f"shard pattern {pattern!r}: not tar shards ({', '.join(SHARD_SUFFIXES)}): {bad[:5]}"
        )
    roots = tuple(dict.fromkeys(os.path.dirname(s) for s in shards))
    text = _has_text_members(shards)
    if not text:
        logger.info("shards %s have no .txt members: captions are not embedded", pattern)
    spec = {"input": absolute, "format": "wds"}
    return _Resolved(spec, roots, [], shards, images=True, text=text)


def _has_text_members(shards: list[str]) -> bool:
    """Whether the first readable shard has a ``.txt`` member anywhere (only its headers are
    read: the data is seeked past). A shard that cannot be read is passed over here; the run
    records it as a skipped ``bad_shard``."""
    for shard in shards:
        seen = False
        try:
            with tarfile.open(shard, mode="r:*") as tar:
                for member in tar:
                    seen = True
                    if member.name.lower().endswith(".txt"):
                        return True
        except (tarfile.TarError, OSError, EOFError) as err:
            logger.warning("shard %s: cannot read its member list (%s)", shard, err)
        if seen:
            return False
    return False


def _resolve_table(
    path: Path, image_root: str | os.PathLike | None, image: str | None, caption: str | None
) -> _Resolved:
    """One sample per row; the key is the row's ``key`` cell when there is one, else its
    0-based row number."""
    table_path, root, names, (image_col, caption_col) = open_table(
        path, image_root, required=False, image=image, caption=caption
    )
    table_path, root = table_path.resolve(), root.resolve()
    if image_col is None and caption_col is None:
        raise ValueError(
            f"table {str(path)!r} has no image column ({', '.join(IMAGE_COLUMNS)}) and no "
            f"caption column ({', '.join(CAPTION_COLUMNS)}); columns: {names}; name them "
            "with image_column= / caption_column="
        )
    cells = read_table_rows(table_path, names, None).columns
    rows = [dict(zip(names, values, strict=True)) for values in zip(*cells.values(), strict=True)]
    if image_col is None:
        logger.warning(
            "table %s has no image column (%s): embedding its captions only",
            path, ", ".join(IMAGE_COLUMNS),
        )  # fmt: skip
    samples = []
    for number, row in enumerate(rows):
        cell = cell_text(row[image_col]) if image_col is not None else ""
        caption = cell_text(row[caption_col]) if caption_col is not None else ""
        samples.append(
            FileSample(
                key=cell_text(row.get(KEY_COLUMN)) or str(number),
                path=root / cell if cell else None,
                caption=caption or None,
                json=json.dumps(row, ensure_ascii=False, default=str),
            )
        )
    spec = {
        "input": str(table_path),
        "format": "table",
        "image_column": image_col or "",
        "caption_column": caption_col or "",
        "image_root": str(root),
    }
    return _Resolved(
        spec, (str(root),), samples, [], images=image_col is not None, text=caption_col is not None
    )
