"""Embed a collection of images (and their captions) into partitions on disk.

:func:`embed_collection` reads folders, tar shards or tables (:mod:`.embed_inputs`), splits
them into deterministic partitions, gives partition ``p`` to rank ``p % world_size``, decodes
in DataLoader workers (:mod:`.embed_reader`) and writes each partition in the layout of
:mod:`.layout`: image embeddings, caption embeddings, metadata, and the stats file last.

What it guarantees, where a plain embedding loop does not:

* **Aligned rows.** A broken image (empty, truncated, not an image, missing) is skipped and
  listed with its key and reason in the partition's stats; it gets no row in any file, so row
  ``i`` of the embeddings is always the sample of metadata row ``i``.
* **Resumable.** Every file is written atomically and the stats file last, so a restarted run
  skips the partitions that have stats and redoes any other. ``embed_info.json`` records the
  model (with a hash of its weights) and the partition plan (with a hash of every sample path
  or shard); a rerun with another model, other inputs or changed folders fails with the
  difference instead of mixing embeddings.
* **Order-independent.** The chunks of a partition are reassembled in planned order, so the
  result does not depend on the number of workers or ranks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text
from torch.utils.data import DataLoader

from clipforge.api import get_tokenizer
from clipforge.atomic import atomic_path, write_json_atomic
from clipforge.distributed import resolve_device, world_info
from clipforge.models import CLIP, create_model
from clipforge.models.digest import weights_digest
from clipforge.search.embed_inputs import CollectionPlan, Partition, TableColumns, plan_collection
from clipforge.search.embed_reader import Chunk, PartitionReader
from clipforge.search.layout import (
    INFO_FILE,
    complete_partitions,
    img_emb_path,
    metadata_path,
    read_info,
    stats_path,
    text_emb_path,
)
from clipforge.transforms import image_transform
from clipforge.version import __version__

logger = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
# embed_info.json entries that must match for a rerun to continue a collection.
IDENTITY_KEYS: tuple[str, ...] = (
    "model",
    "weights_blake2b",
    "dim",
    "images",
    "text",
    "inputs",
    "partitioning",
    "plan_blake2b",
)
METADATA_COLUMNS: tuple[str, ...] = ("key", "path", "member", "caption", "json")


def embed_collection(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    model: str,
    pretrained: str | os.PathLike | None = None,
    batch_size: int = 128,
    partition_size: int = 10_000,
    shards_per_partition: int = 1,
    num_workers: int = 4,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    input_format: str = "auto",
    image_root: str | os.PathLike | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed ``inputs`` with ``model`` into ``out_dir``; return this rank's summary.

    ``inputs`` are image folders, tar shards (paths or brace patterns) or tables (see
    :mod:`clipforge.search.embed_inputs`; ``input_format`` forces one of ``folder``, ``wds``,
    ``table``). Folder and table samples are cut into partitions of ``partition_size``,
    shards into partitions of ``shards_per_partition``. ``image_root``, ``image_column`` and
    ``caption_column`` apply to tables.

    ``model``/``pretrained`` go to :func:`clipforge.create_model`. Images are decoded by
    ``num_workers`` DataLoader workers (0: in this process) and embedded ``batch_size`` at a
    time on ``device`` (default: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU),
    in float32 or under bfloat16 autocast (``precision="bf16"``).

    ``rank``/``world_size`` default to the initialised process group, then to torchrun's
    ``RANK``/``WORLD_SIZE``, then to a single process; this rank embeds the partitions ``p``
    with ``p % world_size == rank`` that are not complete yet.
    """
    _check_options(batch_size, partition_size, shards_per_partition, num_workers, precision)
    rank, world_size = resolve_rank(rank, world_size)
    torch_device = resolve_device(device)
    collection = plan_collection(
        inputs,
        input_format=input_format,
        partition_size=partition_size,
        shards_per_partition=shards_per_partition,
        image_root=image_root,
        columns=TableColumns(image=image_column, caption=caption_column),
    )
    net = create_model(model, pretrained).eval()
    out = Path(out_dir)
    info = collection_info(
        collection,
        net,
        model=model,
        pretrained=pretrained,
        partitioning=_partitioning(collection, partition_size, shards_per_partition),
        precision=precision,
    )
    ensure_info(out, info)
    mine = [p for p in collection.partitions if p.index % world_size == rank]
    todo = [p for p in mine if not stats_path(out, p.index).is_file()]
    logger.info(
        "rank %d of %d: %d of %d partitions are this rank's, %d already complete, %d to embed",
        rank, world_size, len(mine), len(collection.partitions), len(mine) - len(todo), len(todo),
    )  # fmt: skip
    embedder = Embedder(net.to(torch_device), torch_device, precision, batch_size)
    reader = PartitionReader(
        todo,
        transform=image_transform(net.image_size, is_train=False),
        tokenizer=get_tokenizer(net) if collection.text else None,
        batch_size=batch_size,
        images=collection.images,
    )
    writer = PartitionWriter(out, collection, embedder)
    started = time.perf_counter()
    with _EmbedProgress(
        _progress_total(collection, todo), collection.images, progress and rank == 0
    ) as bar:
        results = _run(reader, writer, num_workers, torch_device, bar)
    summary = _summary(out, collection, results, time.perf_counter() - started)
    summary.update(
        rank=rank, world_size=world_size, partitions_already_complete=len(mine) - len(todo)
    )
    _log_summary(summary)
    return summary


def _check_options(
    batch_size: int,
    partition_size: int,
    shards_per_partition: int,
    num_workers: int,
    precision: str,
) -> None:
    for name, value, minimum in (
        ("batch_size", batch_size, 1),
        ("partition_size", partition_size, 1),
        ("shards_per_partition", shards_per_partition, 1),
        ("num_workers", num_workers, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name}={value!r} must be an int >= {minimum}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} must be one of {list(PRECISIONS)}")


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: the arguments, else the process group, else torchrun's
    environment, else ``(0, 1)``."""
    if (rank is None) != (world_size is None):
        raise ValueError(f"pass rank and world_size together (got {rank=}, {world_size=})")
    if rank is None:
        if world_info()[1] > 1 or "WORLD_SIZE" not in os.environ:
            rank, world_size = world_info()
        else:
            rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be in [0, world_size={world_size!r})")
    return rank, world_size


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"environment variable {name}={value!r} is not an integer (WORLD_SIZE is set, so "
            "this looks like a torchrun launch, which sets RANK and WORLD_SIZE)"
        ) from None


def _partitioning(collection: CollectionPlan, partition_size: int, shards: int) -> dict[str, int]:
    per = {"samples_per_partition": partition_size}
    if collection.kind == "wds":
        per = {"shards_per_partition": shards}
    return {**per, "partitions": len(collection.partitions)}


def _absolute_if_file(spec: str | os.PathLike) -> str:
    return str(Path(spec).resolve()) if Path(spec).exists() else str(spec)


def collection_info(
    collection: CollectionPlan,
    net: CLIP,
    *,
    model: str,
    pretrained: str | os.PathLike | None,
    partitioning: dict[str, int],
    precision: str,
) -> dict[str, Any]:
    """The content of ``embed_info.json`` for this run.

    Paths (a config JSON as ``model``, a weights file) are stored absolute, so the server finds
    them whatever directory it starts in.
    """
    return {
        "model": _absolute_if_file(model),
        "pretrained": None if pretrained is None else _absolute_if_file(pretrained),
        "weights_blake2b": weights_digest(net),
        "dim": net.config.embed_dim,
        "image_size": net.image_size,
        "context_length": net.context_length,
        "images": collection.images,
        "text": collection.text,
        "inputs": list(collection.inputs),
        "partitioning": partitioning,
        "plan_blake2b": collection.fingerprint,
        "samples": collection.samples,
        "image_roots": list(collection.image_roots),
        "precision": precision,
        "clipforge_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def ensure_info(out: Path, info: dict[str, Any]) -> None:
    """Write ``embed_info.json`` for a new collection, or check that an existing one was made
    by the same model from the same inputs (its ``created`` is kept)."""
    if not (out / INFO_FILE).is_file():
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / INFO_FILE, info)
        return
    existing = read_info(out)
    differences = [
        f"{key}: {existing.get(key)!r} in the collection, {info[key]!r} now"
        for key in IDENTITY_KEYS
        if existing.get(key) != info[key]
    ]
    if differences:
        raise ValueError(
            f"{out} holds a collection embedded differently ({'; '.join(differences)}); "
            "embed into a new folder, or delete this one to start over"
        )
    if existing.get("precision") != info["precision"]:
        logger.warning(
            "%s was started with precision=%s, continuing with %s",
            out, existing.get("precision"), info["precision"],
        )  # fmt: skip


@dataclass
class Embedder:
    """The model on its device, returning L2-normalised float32 CPU embeddings."""

    model: CLIP
    device: torch.device
    precision: str
    batch_size: int

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def dim(self) -> int:
        return self.model.config.embed_dim

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, D)."""
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        return F.normalize(features.float(), dim=-1).cpu()

    def texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """(C, L) -> (C, D), embedded in batches of similar length.

        The text tower stops at the longest row's end-of-text token, so batching captions
        sorted by length wastes no compute on padding; the rows go back to their order after.
        """
        lengths = tokens.argmax(dim=-1)  # (C,) position of EOT, the largest id
        order = torch.argsort(lengths, stable=True)
        out = torch.empty(len(tokens), self.dim)  # (C, D)
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                features = self.model.encode_text(tokens[rows].to(self.device))
                out[rows] = F.normalize(features.float(), dim=-1).cpu()
        return out


@dataclass
class _Assembly:
    """The chunks of one partition received so far, with their image embeddings."""

    units: int
    started: float
    finished_units: int = 0
    chunks: dict[tuple[int, int], tuple[Chunk, torch.Tensor | None]] = field(default_factory=dict)

    def add(self, chunk: Chunk, embeddings: torch.Tensor | None) -> None:
        self.chunks[(chunk.unit, chunk.part)] = (chunk, embeddings)
        self.finished_units += chunk.last

    @property
    def complete(self) -> bool:
        return self.finished_units == self.units

    def ordered(self) -> list[tuple[Chunk, torch.Tensor | None]]:
        return [self.chunks[k] for k in sorted(self.chunks)]


def write_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (a handle, so numpy adds no ``.npy`` suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_metadata(path: Path, rows: list[dict[str, Any]]) -> None:
    """The metadata parquet: one row per sample, :data:`METADATA_COLUMNS`, all strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string()) for name in METADATA_COLUMNS])
    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class PartitionWriter:
    """Turns a complete :class:`_Assembly` into the partition's files, stats last."""

    def __init__(self, out: Path, collection: CollectionPlan, embedder: Embedder) -> None:
        self.out = out
        self.collection = collection
        self.embedder = embedder

    def write(self, index: int, assembly: _Assembly) -> dict[str, Any]:
        """Write partition ``index`` and return its stats."""
        parts = assembly.ordered()
        rows = [row for chunk, _ in parts for row in chunk.rows]
        dim = self.embedder.dim
        if self.collection.images:
            found = [emb for _, emb in parts if emb is not None]
            images = torch.cat(found) if found else torch.zeros(0, dim)  # (n, D)
            _check_rows(index, "image embeddings", len(images), len(rows))
            write_array(img_emb_path(self.out, index), images.numpy().astype(np.float16))
        captioned = [i for i, row in enumerate(rows) if row["caption"] is not None]
        if self.collection.text:
            texts = torch.zeros(len(rows), dim)  # (n, D), zero rows where there is no caption
            tokens = [chunk.tokens for chunk, _ in parts if chunk.tokens is not None]
            if tokens:
                token_rows = torch.cat(tokens)  # (C, L)
                _check_rows(index, "tokenized captions", len(token_rows), len(captioned))
                texts[captioned] = self.embedder.texts(token_rows)
            write_array(text_emb_path(self.out, index), texts.numpy().astype(np.float16))
        write_metadata(metadata_path(self.out, index), rows)
        stats = self._stats(index, parts, rows, len(captioned), assembly.started)
        stats_path(self.out, index).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(stats_path(self.out, index), stats)
        return stats

    def _stats(
        self,
        index: int,
        parts: list[tuple[Chunk, torch.Tensor | None]],
        rows: list[dict[str, Any]],
        captions: int,
        started: float,
    ) -> dict[str, Any]:
        skipped = [entry for chunk, _ in parts for entry in chunk.skipped]
        seconds = time.perf_counter() - started
        images = len(rows) if self.collection.images else 0
        partition = self.collection.partitions[index]
        return {
            "partition": index,
            "rows": len(rows),
            "images": images,
            "captions": captions,
            "seen": len(rows) + len(skipped),
            "skipped": len(skipped),
            "skipped_by_reason": dict(sorted(Counter(e["reason"] for e in skipped).items())),
            "skipped_samples": skipped,
            "warnings": [entry for chunk, _ in parts for entry in chunk.warnings],
            "shards": list(partition.shards),
            "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 1) if seconds > 0 else 0.0,
        }


def _check_rows(index: int, what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(
            f"partition {index}: {got} {what} for {expected} metadata rows (a clipforge bug)"
        )


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"-- {self.unit}/s")


class _EmbedProgress:
    """A rich bar over samples (an open-ended counter for shards) with the throughput."""

    def __init__(self, total: int | None, images: bool, enabled: bool) -> None:
        self._progress = Progress(
            TextColumn("[bold]embed"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn("images" if images else "captions"),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task("embed", total=total, status="")

    def __enter__(self) -> _EmbedProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def advance(self, samples: int, status: str) -> None:
        self._progress.update(self._task, advance=samples, status=status)


def _progress_total(collection: CollectionPlan, todo: list[Partition]) -> int | None:
    return sum(len(p.samples) for p in todo) if collection.kind == "files" else None


def _run(
    reader: PartitionReader,
    writer: PartitionWriter,
    num_workers: int,
    device: torch.device,
    bar: _EmbedProgress,
) -> list[dict[str, Any]]:
    """Embed every chunk as it arrives; write each partition once all its units are in."""
    if not reader.partitions:
        return []
    loader = DataLoader(
        reader, batch_size=None, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    assemblies: dict[int, _Assembly] = {}
    results = []
    for chunk in loader:
        assembly = assemblies.setdefault(
            chunk.partition, _Assembly(units=chunk.units, started=time.perf_counter())
        )
        embeddings = None if chunk.pixels is None else writer.embedder.images(chunk.pixels)
        chunk.pixels = None  # the embeddings are all that is kept
        assembly.add(chunk, embeddings)
        bar.advance(len(chunk.rows) + len(chunk.skipped), f"{len(results)} partitions written")
        if assembly.complete:
            results.append(writer.write(chunk.partition, assemblies.pop(chunk.partition)))
            _log_partition(results[-1])
    if assemblies:
        raise RuntimeError(f"partitions {sorted(assemblies)} ended incomplete (a clipforge bug)")
    return results


def _log_partition(stats: dict[str, Any]) -> None:
    logger.info(
        "partition %05d: %d rows, %d captions, %d skipped in %.1f s",
        stats["partition"], stats["rows"], stats["captions"], stats["skipped"], stats["seconds"],
    )  # fmt: skip
    if stats["skipped"]:
        logger.warning(
            "partition %05d: skipped %d of %d samples %s, e.g. %s",
            stats["partition"], stats["skipped"], stats["seen"], stats["skipped_by_reason"],
            stats["skipped_samples"][0],
        )  # fmt: skip


def _log_summary(summary: dict[str, Any]) -> None:
    logger.info(
        "embedded %d partitions (%d images, %d captions, %d skipped) in %.1f s: %.1f images/s; "
        "%d of %d partitions of %s complete",
        summary["partitions_embedded"], summary["images"], summary["captions"],
        summary["skipped"], summary["seconds"], summary["images_per_second"],
        summary["complete_partitions"], summary["partitions"], summary["out_dir"],
    )  # fmt: skip


def _summary(
    out: Path,
    collection: CollectionPlan,
    results: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    images = sum(r["images"] for r in results)
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r["skipped_by_reason"])
    return {
        "out_dir": str(out),
        "partitions": len(collection.partitions),
        "partitions_embedded": len(results),
        "complete_partitions": len(complete_partitions(out)),
        "rows": sum(r["rows"] for r in results),
        "images": images,
        "captions": sum(r["captions"] for r in results),
        "skipped": sum(reasons.values()),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "seconds": round(seconds, 3),
        "images_per_second": round(images / seconds, 1) if seconds > 0 else 0.0,
    }
