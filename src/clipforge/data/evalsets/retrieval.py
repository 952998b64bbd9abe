"""Retrieval sets (images with several captions each) from tables and annotation files.

* Tables (CSV/TSV/parquet): one row per (image, caption), rows of one image grouped by its
  path, or one row per image whose caption cell holds a list (parquet list, or a JSON list
  in CSV).
* Karpathy-split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``):
  ``{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}, ...]}, ...]}``,
  filtered by ``split``; images lie at ``image_root/filepath/filename``.
* COCO caption JSON (what CLIP_benchmark's ``coco_{split}_karpathy.json`` files are):
  ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``, one split
  per file.
* CLIP_benchmark's Flickr annotation text (``flickr30k_{split}_karpathy.txt``): a header line,
  then ``<image file>,<caption>`` per line, the caption running to the end of the line.

Images keep the order of their first appearance in the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from clipforge.data.evalsets.base import ImageTransform, RetrievalSet
from clipforge.data.skips import DataError
from clipforge.data.tables import open_table, read_table_rows, resolve_image_root


def _caption_list(cell: object) -> list[str]:
    """The captions of a cell: a list (parquet), a JSON list of strings (CSV), or one string."""
    if isinstance(cell, str) and cell.lstrip().startswith("["):
        try:
            parsed = json.loads(cell)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            cell = parsed
    items = cell if isinstance(cell, (list, tuple)) else [cell]
    return [str(item).strip() for item in items if item is not None and str(item).strip()]


def _retrieval_set(
    name: str,
    root: Path,
    pairs: Iterable[tuple[str, list[str]]],
    transform: ImageTransform | None,
) -> RetrievalSet:
    """``(image, captions)`` pairs as a set keyed by image path, the captions of repeated images
    gathered (images in first-seen order)."""
    groups: dict[str, list[str]] = {}
    for image, captions in pairs:
        groups.setdefault(image, []).extend(captions)
    return RetrievalSet(
        name=name,
        keys=list(groups),
        images=[root / image for image in groups],
        captions=list(groups.values()),
        transform=transform,
    )


def table_retrieval(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    transform: ImageTransform | None = None,
) -> RetrievalSet:
    """A table of (image path, caption) rows as a retrieval set keyed by image path.

    Columns: ``image_column`` / ``caption_column``, or the one present of the usual names
    (``filepath, path, image, ...`` and ``caption, captions, text, title``). Empty caption
    cells are ignored; an image left with no caption is an error. Paths are relative to
    ``image_root`` (default: the table's folder). ``split`` selects rows by a ``split`` column.
    """
    table_path, root, _, (image_column, caption_column) = open_table(
        path, image_root, image=image_column, caption=caption_column
    )
    table = read_table_rows(table_path, [image_column, caption_column], split)
    captions = map(_caption_list, table.columns[caption_column])
    pairs = zip(table.paths(image_column), captions, strict=True)
    return _retrieval_set(str(table_path), root, pairs, transform)


def flickr_text_retrieval(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    transform: ImageTransform | None = None,
) -> RetrievalSet:
    """CLIP_benchmark's Flickr annotation file (header line, then ``<image>,<caption>``), which
    holds one split: ``split`` must be ``None``."""
    text_path = Path(path)
    if split is not None:
        raise ValueError(f"{str(text_path)!r} holds one split (by its file name); got {split!r}")
    if not text_path.is_file():
        raise FileNotFoundError(f"caption file {str(text_path)!r} not found")
    root = resolve_image_root(text_path, image_root)
    pairs = []
    lines = text_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        image, comma, caption = line.strip().partition(",")
        if not comma or not image.strip():
            raise DataError(
                f"caption file {str(text_path)!r}: line {number} {line[:60]!r} is not "
                "'<image>,<caption>'"
            )
        pairs.append((image.strip(), _caption_list(caption)))
    if not pairs:
        raise DataError(f"caption file {str(text_path)!r} lists no image")
    return _retrieval_set(str(text_path), root, pairs, transform)


def json_retrieval(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    transform: ImageTransform | None = None,
) -> RetrievalSet:
    """A Karpathy-split JSON (the images of ``split``, default ``"test"``) or a COCO caption
    JSON (one split per file, so ``split`` must be ``None``) as a retrieval set keyed by the
    image's path relative to ``image_root`` (default: the file's folder)."""
    json_path = Path(path)
    if not json_path.is_file():
        raise FileNotFoundError(f"annotation file {str(json_path)!r} not found")
    root = resolve_image_root(json_path, image_root)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"annotation file {str(json_path)!r} does not parse ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(
            f"annotation file {str(json_path)!r}: expected an object with an 'images' list "
            "(Karpathy split or COCO captions)"
        )
    if "annotations" in data:
        if split is not None:
            raise DataError(
                f"annotation file {str(json_path)!r} is in COCO caption format, which holds one "
                f"split per file; pass split=None instead of {split!r}"
            )
        return _retrieval_set(str(json_path), root, _coco_pairs(data, str(json_path)), transform)
    split = "test" if split is None else split
    pairs = _karpathy_pairs(data["images"], split, str(json_path))
    return _retrieval_set(f"{json_path}[{split}]", root, pairs, transform)


def _karpathy_pairs(entries: list[object], split: str, source: str) -> list[tuple[str, list[str]]]:
    pairs, splits = [], set()
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
            raise DataError(f"{source}: images[{number}] has no 'filename'")
        splits.add(entry.get("split"))
        if entry.get("split") != split:
            continue
        sentences = entry.get("sentences")
        if not isinstance(sentences, list) or not all(
            isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sentences
        ):
            raise DataError(
                f"{source}: images[{number}] ({entry['filename']!r}) needs 'sentences' as a list "
                "of {'raw': caption}"
            )
        folder = entry.get("filepath") or ""
        image = f"{folder}/{entry['filename']}" if folder else entry["filename"]
        pairs.append((image, _caption_list([s["raw"] for s in sentences])))
    if not pairs:
        raise DataError(
            f"{source}: no image in split {split!r} (splits: {sorted(str(s) for s in splits)})"
        )
    return pairs


def _coco_pairs(data: dict, source: str) -> list[tuple[str, list[str]]]:
    files: dict[object, str] = {}
    for number, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise DataError(f"{source}: images[{number}] needs 'id' and 'file_name'")
        files[entry["id"]] = str(entry["file_name"])
    captions: dict[object, list[str]] = {image_id: [] for image_id in files}
    for number, note in enumerate(data["annotations"]):
        if not isinstance(note, dict) or not isinstance(note.get("caption"), str):
            raise DataError(f"{source}: annotations[{number}] needs 'image_id' and 'caption'")
        if note.get("image_id") not in files:
            raise DataError(
                f"{source}: annotations[{number}] refers to image_id {note.get('image_id')!r}, "
                "which no entry of 'images' has"
            )
        captions[note["image_id"]].extend(_caption_list(note["caption"]))
    if not files:
        raise DataError(f"{source}: 'images' is empty")
    return [(files[image_id], captions[image_id]) for image_id in files]
