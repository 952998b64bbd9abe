"""Embed a collection of images (and their captions) into partitions on disk.

:func:`embed_collection` reads folders, tar shards or tables (:mod:`clipforge.data.plan`), splits
them into deterministic partitions, gives partition ``p`` to rank ``p % world_size``, decodes
in DataLoader workers (:mod:`clipforge.data.partition_reader`), encodes with the shared
:class:`~clipforge.encoder.Encoder` and writes each partition in the layout of :mod:`.layout`
(:mod:`.embed_writer`): image embeddings, caption embeddings, metadata, and the stats file last.

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

import datetime as dt
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from clipforge.atomic import write_json_atomic
from clipforge.data.partition_reader import PartitionReader
from clipforge.data.plan import CollectionPlan, plan_collection
from clipforge.distributed import resolve_rank
from clipforge.encoder import Encoder
from clipforge.search.configs import EmbedConfig
from clipforge.search.embed_writer import Assembly, PartitionWriter
from clipforge.search.layout import INFO_FILE, complete_partitions, read_info, stats_path
from clipforge.version import __version__

logger = logging.getLogger(__name__)

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


def embed_collection(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Embed ``inputs`` into ``out_dir``; return this rank's summary.

    ``options`` are the fields of :class:`~clipforge.search.configs.EmbedConfig` (their help
    says what each does), checked before any input is read or model loaded. ``embed_info.json``
    records the precision ``precision`` resolved to, and the server encodes queries with it.

    ``rank``/``world_size`` default to the initialised process group, then to torchrun's
    ``RANK``/``WORLD_SIZE``, then to a single process; this rank embeds the partitions ``p``
    with ``p % world_size == rank`` that are not complete yet.
    """
    config = EmbedConfig(inputs=inputs, out=str(out_dir), **options)
    rank, world_size = resolve_rank(rank, world_size)
    collection = plan_collection(
        config.inputs,
        input_format=config.input_format,
        partition_size=config.partition_size,
        shards_per_partition=config.shards_per_partition,
        image_root=config.image_root,
        image_column=config.image_column,
        caption_column=config.caption_column,
    )
    encoder = Encoder.load(
        config.model,
        config.pretrained,
        precision=config.precision,
        device=config.device,
        batch_size=config.batch_size,
        workers=config.num_workers,
        progress=config.progress and rank == 0,
    )
    out = Path(out_dir)
    per = {"samples_per_partition": config.partition_size}
    if collection.kind == "wds":
        per = {"shards_per_partition": config.shards_per_partition}
    partitioning = {**per, "partitions": len(collection.partitions)}
    ensure_info(out, collection_info(collection, encoder, partitioning=partitioning))
    mine = [p for p in collection.partitions if p.index % world_size == rank]
    todo = [p for p in mine if not stats_path(out, p.index).is_file()]
    logger.info(
        "rank %d of %d: %d of %d partitions are this rank's, %d already complete, %d to embed",
        rank, world_size, len(mine), len(collection.partitions), len(mine) - len(todo), len(todo),
    )  # fmt: skip
    reader = PartitionReader(
        todo,
        transform=encoder.transform,
        tokenizer=encoder.tokenizer if collection.text else None,
        batch_size=config.batch_size,
        images=collection.images,
    )
    started = time.perf_counter()
    total = sum(len(p.samples) for p in todo) if collection.kind == "files" else None
    results = _run(reader, PartitionWriter(out, collection, encoder), total)
    summary = _summary(out, collection, results, time.perf_counter() - started)
    summary.update(
        rank=rank, world_size=world_size, partitions_already_complete=len(mine) - len(todo)
    )
    logger.info(
        "embedded %(partitions_embedded)d partitions (%(images)d images, %(captions)d captions, "
        "%(skipped)d skipped) in %(seconds).1f s: %(images_per_second).1f images/s; "
        "%(complete_partitions)d of %(partitions)d partitions of %(out_dir)s complete",
        summary,
    )
    return summary


def _absolute_if_file(spec: str | os.PathLike) -> str:
    return str(Path(spec).resolve()) if Path(spec).exists() else str(spec)


def collection_info(
    collection: CollectionPlan, encoder: Encoder, *, partitioning: dict[str, int]
) -> dict[str, Any]:
    """The content of ``embed_info.json`` for this run.

    Paths (a config JSON as ``model``, a weights file) are stored absolute, so the server finds
    them whatever directory it starts in.
    """
    model, pretrained = encoder.spec
    return {
        "model": _absolute_if_file(model),
        "pretrained": None if pretrained is None else _absolute_if_file(pretrained),
        "weights_blake2b": encoder.weights_digest,
        "dim": encoder.dim,
        "image_size": encoder.model.image_size,
        "context_length": encoder.context_length,
        "images": collection.images,
        "text": collection.text,
        "inputs": list(collection.inputs),
        "partitioning": partitioning,
        "plan_blake2b": collection.fingerprint,
        "samples": collection.samples,
        "image_roots": list(collection.image_roots),
        "precision": encoder.precision.name,
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


def _run(
    reader: PartitionReader, writer: PartitionWriter, total: int | None
) -> list[dict[str, Any]]:
    """Embed every chunk as it arrives; write each partition once all its units are in."""
    if not reader.partitions:
        return []
    encoder = writer.encoder
    assemblies: dict[int, Assembly] = {}
    results = []
    waited_from = time.perf_counter()  # a chunk's time runs from the end of the one before it
    for chunk, embeddings in encoder.stream(
        encoder.loader(reader),
        pixels=lambda chunk: chunk.pixels,
        samples=lambda chunk: len(chunk.rows) + len(chunk.skipped),
        label="embed",
        total=total,
    ):
        chunk.pixels = None  # the embeddings are all that is kept
        assembly = assemblies.setdefault(
            chunk.partition, Assembly(units=chunk.units, started=waited_from)
        )
        assembly.add(chunk, embeddings)
        if assembly.complete:
            stats = writer.write(chunk.partition, assemblies.pop(chunk.partition))
            results.append(stats)
            logger.info("partition %(partition)05d: %(rows)d rows, %(captions)d captions, "
                        "%(skipped)d skipped in %(seconds).1f s", stats)  # fmt: skip
            if stats["skipped"]:
                logger.warning("partition %(partition)05d: skipped %(skipped)d of %(seen)d samples "
                               "%(skipped_by_reason)s, e.g. %(example)s",
                               {**stats, "example": stats["skipped_samples"][0]})  # fmt: skip
        waited_from = time.perf_counter()
    if assemblies:
        raise RuntimeError(f"partitions {sorted(assemblies)} ended incomplete (a clipforge bug)")
    return results


def _summary(
    out: Path, collection: CollectionPlan, results: list[dict[str, Any]], seconds: float
) -> dict[str, Any]:
    images = sum(r["images"] for r in results)
    reasons = sum((Counter(r["skipped_by_reason"]) for r in results), Counter())
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
