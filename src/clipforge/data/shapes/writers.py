"""Writing the shapes world to disk in the formats real data arrives in.

``wds`` mirrors img2dataset's webdataset output, so the shard reader is exercised exactly as on
LAION or DataComp: ``OUT/00000.tar`` with ``{key}.jpg/.txt/.json``, and beside it
``00000.parquet`` (one row per sample) and ``00000_stats.json``. ``csv`` is the other common
layout: ``OUT/images/{key}.jpg`` plus ``OUT/captions.csv`` and ``OUT/captions.parquet``.

Keys are 9 digits, the 5-digit shard index then the 4-digit index within the shard, as
img2dataset writes them. Sample ``i`` of the output is always ``world.sample(split, i)``, so the
data does not depend on ``shard_size`` or ``workers``. Every file is written under a temporary
name and renamed into place: an interrupted run never leaves a half-written shard, and the
stats file, written last, marks a shard complete.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from clipforge.atomic import atomic_path
from clipforge.data.shapes.captions import canonical_caption
from clipforge.data.shapes.vocab import check_choice, check_count, check_split
from clipforge.data.shapes.world import ShapesWorld
from clipforge.data.tables import write_table

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("wds", "csv")
MAX_SHARD_SIZE = 10_000  # the within-shard part of a key has 4 digits
JPEG_QUALITY = 95
# Parquet column types; the attribute columns come from Scene.attributes().
COLUMN_TYPES: dict[str, str] = {
    "filepath": "string",
    "key": "string",
    "caption": "string",
    "canonical_caption": "string",
    "status": "string",
    "error_message": "string",
    "width": "int32",
    "height": "int32",
    "split": "string",
    "index": "int64",
    "n_objects": "int32",
    "shapes": "string",
    "colours": "string",
    "sizes": "string",
    "positions": "string",
    "background": "string",
    "heldout": "bool",
}
WDS_TYPES = {name: kind for name, kind in COLUMN_TYPES.items() if name != "filepath"}
CSV_TYPES = {
    name: kind for name, kind in COLUMN_TYPES.items() if name not in ("status", "error_message")
}


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_shapes` wrote and how fast."""

    out_dir: Path
    format: str
    split: str
    count: int
    shards: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Shard:
    """One unit of work: samples ``start``..``stop`` of ``split``, written as shard ``index``."""

    world: ShapesWorld
    split: str
    format: str
    out_dir: Path
    index: int
    start: int
    stop: int


def write_shapes(
    out_dir: str | os.PathLike[str],
    n: int,
    format: str = "wds",
    split: str = "train",
    shard_size: int = 1000,
    image_size: int = 64,
    seed: int = 0,
    workers: int = 1,
) -> WriteSummary:
    """Write samples ``0..n-1`` of ``split`` to ``out_dir`` as webdataset shards (``"wds"``)
    or an image folder with a caption table (``"csv"``), ``workers`` processes in parallel."""
    check_count("n", n)
    check_choice("format", format, FORMATS)
    check_split(split)
    check_count("shard_size", shard_size, 1, MAX_SHARD_SIZE)
    check_count("workers", workers, minimum=1)
    world = ShapesWorld(seed=seed, image_size=image_size)
    out = Path(out_dir)
    (out / "images" if format == "csv" else out).mkdir(parents=True, exist_ok=True)
    shards = [
        _Shard(world, split, format, out, index, start, min(n, start + shard_size))
        for index, start in enumerate(range(0, n, shard_size))
    ]
    began = time.perf_counter()
    rows = _run(shards, workers, began, n)
    if format == "csv":  # the run's caption table, as CSV and as parquet
        with atomic_path(out / "captions.csv") as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_TYPES)
            writer.writeheader()
            writer.writerows(rows)
        write_table(out / "captions.parquet", rows, CSV_TYPES)
    summary = WriteSummary(out, format, split, n, len(shards), time.perf_counter() - began)
    logger.info(
        "wrote %d %s samples to %s in %.1f s (%.0f samples/s)",
        n, split, out, summary.seconds, summary.samples_per_second,
    )  # fmt: skip
    return summary


def _run(shards: list[_Shard], workers: int, began: float, n: int) -> list[dict]:
    """Write every shard, logging progress; return the rows of the run-wide caption table
    (csv) in sample order. A webdataset shard writes its own parquet and adds no rows."""
    rows: list[dict] = []
    done = 0
    with ExitStack() as stack:
        results = map(_write_shard, shards)
        if workers > 1 and len(shards) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(shards))))
            results = pool.map(_write_shard, shards)
        for shard, shard_rows in zip(shards, results, strict=True):
            rows += shard_rows
            done += shard.stop - shard.start
            rate = done / max(time.perf_counter() - began, 1e-9)
            logger.info(
                "shard %05d done: %d/%d samples (%.0f samples/s)", shard.index, done, n, rate
            )
    return rows


def _write_shard(shard: _Shard) -> list[dict]:
    """A shard's images and, for csv, its rows of the caption table; see :func:`_run`."""
    if shard.format == "wds":
        _write_tar(shard)
        return []
    rows = []
    for position in range(shard.stop - shard.start):
        row, jpeg, _ = _sample(shard, position)
        with atomic_path(shard.out_dir / row["filepath"], fsync=False) as tmp:
            tmp.write_bytes(jpeg)
        rows.append(_select(row, CSV_TYPES))
    return rows


def _write_tar(shard: _Shard) -> None:
    """``NNNNN.tar``, then ``NNNNN.parquet``, then ``NNNNN_stats.json``, as img2dataset does."""
    started = time.time()
    stem = shard.out_dir / f"{shard.index:05d}"
    rows = []
    with (
        atomic_path(stem.with_suffix(".tar")) as tmp,
        tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for position in range(shard.stop - shard.start):
            row, jpeg, meta = _sample(shard, position)
            _add(tar, f"{row['key']}.jpg", jpeg)
            _add(tar, f"{row['key']}.txt", row["caption"].encode())
            _add(tar, f"{row['key']}.json", json.dumps(meta).encode())
            rows.append(_select(row, WDS_TYPES))
    write_table(stem.with_suffix(".parquet"), rows, WDS_TYPES)
    ended = time.time()
    stats = {
        "count": len(rows),
        "successes": len(rows),
        "failed": 0,
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "duration": ended - started,
        "start_time": started,
        "end_time": ended,
        "status_dict": {"success": len(rows)},
    }
    with atomic_path(shard.out_dir / f"{shard.index:05d}_stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=2))


def _sample(shard: _Shard, position: int) -> tuple[dict, bytes, dict]:
    """``(table row, JPEG bytes, per-sample JSON)`` for one sample of ``shard``."""
    world, index = shard.world, shard.start + position
    key = f"{shard.index:05d}{position:04d}"
    scene = world.scene(shard.split, index)
    buffer = io.BytesIO()
    world.render(scene).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    row = {
        "filepath": f"images/{key}.jpg",
        "key": key,
        "caption": world.caption(shard.split, index, scene),
        "canonical_caption": canonical_caption(scene),
        "status": "success",
        "error_message": None,
        "width": world.image_size,
        "height": world.image_size,
        "split": shard.split,
        "index": index,
        **scene.attributes(),
    }
    meta = {**_select(row, WDS_TYPES), "seed": world.seed, "scene": scene.to_dict()}
    return row, buffer.getvalue(), meta


def _select(row: dict, columns: dict[str, str]) -> dict:
    return {name: row[name] for name in columns}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed mtime and owner: the same samples always give byte-identical shards. Keys are
    # short, so plain ustar headers suffice (pax headers cost more to build).
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
