"""The file and column conventions every reader of image-text data follows.

Training, evaluation and embedding read the same three layouts (image folders, webdataset
shards, tables); they agree on what an image file is, which shard member holds a sample's
image, and which table columns hold image paths and captions, because these names live here
and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

# In order of preference: a shard sample with several image members uses the first.
IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")
IMAGE_SUFFIXES: tuple[str, ...] = tuple(f".{extension}" for extension in IMAGE_EXTENSIONS)
SHARD_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz")
TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet")

# Tried when the caller names no column; a table with two of them must name the one it means.
IMAGE_COLUMNS: tuple[str, ...] = ("filepath", "path", "image", "image_path", "filename", "file")
CAPTION_COLUMNS: tuple[str, ...] = ("caption", "captions", "text", "txt", "title")
KEY_COLUMN = "key"
SPLIT_COLUMN = "split"

T = TypeVar("T")


def is_hidden(name: str) -> bool:
    """Dot files and dot folders (``.DS_Store``, ``.ipynb_checkpoints``) are never data."""
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    """True for a file name with an image suffix, in any case."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def image_member(members: Mapping[str, T]) -> T | None:
    """The image among a shard sample's members (keyed by extension), or None."""
    return next((members[ext] for ext in IMAGE_EXTENSIONS if ext in members), None)


def visible_files(folder: Path) -> list[str]:
    """Every non-hidden file below ``folder`` (following links), as sorted relative POSIX
    paths, so that a folder lists the same way on every machine."""
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not is_hidden(d)]
        relative = Path(here).relative_to(folder)
        found += [(relative / name).as_posix() for name in files if not is_hidden(name)]
    return sorted(found)
