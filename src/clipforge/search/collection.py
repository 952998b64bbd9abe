"""Read access to an embedded collection by global id: metadata, stored vectors, image bytes.

The server answers every result with its metadata and serves thumbnails, so this module maps a
global id (the row offset over the complete partitions, see :mod:`clipforge.search.layout`) to
its partition and row, reads metadata tables lazily (a few partitions cached, since a large
collection's metadata does not fit in memory at once), memory-maps the vectors, and reads image
bytes from a file or a tar shard member. Images are only ever read from inside the collection's
``image_roots``: a path that resolves elsewhere (``..``, a symlink out) is refused, so a
crafted metadata row cannot turn the server into a file reader for the whole disk.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from clipforge.search import layout
from clipforge.search.vectors import ItemNotFound, VectorSource

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

TABLE_CACHE_SIZE = 8  # metadata partitions kept in memory
SHARD_CACHE_SIZE = 64  # tar shards whose member tables are kept


class Collection:
    """One embedded collection (``EMB_DIR``), addressed by global id ``0 .. len - 1``.

    ``partitions`` pins the partitions (and so the id numbering) to those an index was built
    over, since partitions that completed later may sit between them; by default every complete
    partition is used. ``modality`` picks the stored vectors that :meth:`vectors` returns: the
    image embeddings, or the caption embeddings (a zero row where a sample has no caption).
    """

    def __init__(
        self, root: str | os.PathLike, partitions: list[int] | None = None, modality: str = "image"
    ) -> None:
        self.root = Path(root).resolve()
        self.info = layout.read_info(self.root)
        self.source = VectorSource.from_collection(self.root, modality, partitions)
        self.modality = modality
        self.dim = self.source.dim
        self.partitions = [p.number for p in self.source.partitions]
        self.partition_rows = [p.rows for p in self.source.partitions]
        self.image_roots = [Path(r).resolve() for r in self.info.get("image_roots") or []]
        self._check_metadata()
        self._table = functools.lru_cache(maxsize=TABLE_CACHE_SIZE)(self._read_table)
        self._members = functools.lru_cache(maxsize=SHARD_CACHE_SIZE)(_tar_members)

    def __len__(self) -> int:
        return self.source.total_rows

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (n,) as L2-normalised float32 (n, D); a zero row stays
        zero (a text row of a sample without caption)."""
        out = self.source.take(ids)  # (n, D)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _check_metadata(self) -> None:
        """Every metadata table exists with one row per vector, checked from the parquet footers
        at start-up so that a broken collection fails to load rather than mid-request."""
        import pyarrow.parquet as pq

        for partition, rows in zip(self.partitions, self.partition_rows, strict=True):
            path = layout.metadata_path(self.root, partition)
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} is missing although partition {partition} is complete"
                )
            found = pq.read_metadata(path).num_rows
            if found != rows:
                raise ValueError(f"{path} has {found} rows but its embeddings have {rows}")

    def _read_table(self, slot: int) -> pa.Table:
        import pyarrow.parquet as pq

        return pq.read_table(layout.metadata_path(self.root, self.partitions[slot]))

    def rows(self, ids: list[int]) -> list[dict[str, Any]]:
        """The raw metadata rows (key, path, member, caption, json) of ``ids``, in order; one
        ``take`` per partition, so a page of a thousand results costs a few table reads."""
        owner, rows = self.source.locate(np.asarray(ids, dtype=np.int64))
        out: list[dict[str, Any]] = [{}] * len(ids)
        for slot in np.unique(owner).tolist():
            at = np.flatnonzero(owner == slot)
            for position, row in zip(at, self._table(slot).take(rows[at]).to_pylist(), strict=True):
                out[position] = row
        return out

    def items(self, ids: list[int]) -> list[dict[str, Any]]:
        """The public descriptions of ``ids``: id, key, caption, path (relative to its image
        root), member (tar member, webdataset only) and the parsed JSON fields as metadata."""
        out = []
        for item_id, row in zip(ids, self.rows(ids), strict=True):
            item = {"id": item_id, "key": row.get("key"), "caption": row.get("caption")}
            image_path = self._inside_roots(row.get("path"))
            if image_path is not None:
                item["path"] = str(image_path[1])
            if row.get("member"):
                item["member"] = row["member"]
            out.append({**item, "metadata": _parse_json(row.get("json"))})
        return out

    def image(self, item_id: int) -> tuple[bytes, str]:
        """``(bytes, media type)`` of the item's image, from its file or its tar member."""
        (row,) = self.rows([item_id])
        found = self._inside_roots(row.get("path"))
        if found is None:
            raise ItemNotFound(f"id {item_id}: its image is not inside the collection's roots")
        path = found[0]
        try:
            data = (
                self._member_bytes(path, row["member"]) if row.get("member") else path.read_bytes()
            )
        except (OSError, tarfile.TarError, KeyError) as err:
            logger.warning("id %d: cannot read image %s: %s", item_id, path, err)
            raise ItemNotFound(f"id {item_id}: its image cannot be read") from err
        return data, _media_type(data)

    def _inside_roots(self, stored: str | None) -> tuple[Path, Path] | None:
        """``(resolved path, path relative to its root)`` of a stored path that exists inside
        one of the image roots after resolving symlinks and ``..``; None otherwise."""
        if not stored:
            return None
        given = Path(stored)
        for root in self.image_roots:
            candidate = (given if given.is_absolute() else root / given).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                return candidate, candidate.relative_to(root)
        return None

    def _member_bytes(self, shard: Path, member: str) -> bytes:
        info = self._members(shard, shard.stat().st_mtime_ns)[member]
        # The cached TarInfo carries the data offset: no rescan of the archive per image.
        with tarfile.open(shard, mode="r:*") as tar:
            handle = tar.extractfile(info)
            if handle is None:
                raise tarfile.TarError(f"{shard}: member {member!r} holds no data")
            return handle.read()


def _tar_members(shard: Path, mtime_ns: int) -> dict[str, tarfile.TarInfo]:
    """``{member name: TarInfo}`` of a tar shard (plain or compressed). ``mtime_ns`` is part of
    the cache key so that a rewritten shard is scanned again."""
    del mtime_ns
    with tarfile.open(shard, mode="r:*") as tar:
        return {m.name: m for m in tar.getmembers() if m.isfile()}


def _parse_json(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"json": text}
    return value if isinstance(value, dict) else {"json": value}


def _media_type(data: bytes) -> str:
    """The MIME type of image bytes from their header (not from a file name, which may lie)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return Image.MIME.get(img.format or "", "application/octet-stream")
    except Exception:  # Pillow raises many types for unknown data; the bytes are served as-is
        return "application/octet-stream"
