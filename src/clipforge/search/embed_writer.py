"""The files of one embedded partition: chunks reassembled in planned order, written atomically.

Workers hand over a partition's chunks in any order; :class:`Assembly` collects them with their
image embeddings until every unit is in; :class:`PartitionWriter` then encodes the captions and
writes the partition's files, the stats file last (see :mod:`.layout`).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clipforge.atomic import atomic_path, write_json_atomic
from clipforge.data.partition_reader import Chunk
from clipforge.data.plan import CollectionPlan
from clipforge.data.tables import write_table
from clipforge.encoder import Encoder
from clipforge.search import layout


@dataclass
class Assembly:
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


def _write_embeddings(path: Path, vectors: torch.Tensor) -> None:
    """``vectors`` (n, D) saved as float16 to ``path`` atomically (through a handle, so numpy
    adds no ``.npy`` suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, vectors.numpy().astype(np.float16))


class PartitionWriter:
    """Turns a complete :class:`Assembly` into the partition's files, stats last."""

    def __init__(self, out: Path, collection: CollectionPlan, encoder: Encoder) -> None:
        self.out = out
        self.collection = collection
        self.encoder = encoder

    def write(self, index: int, assembly: Assembly) -> dict[str, Any]:
        """Write partition ``index`` and return its stats."""
        parts = [assembly.chunks[key] for key in sorted(assembly.chunks)]  # planned order
        rows = [row for chunk, _ in parts for row in chunk.rows]
        dim = self.encoder.dim
        if self.collection.images:
            found = [emb for _, emb in parts if emb is not None]
            images = torch.cat(found) if found else torch.zeros(0, dim)  # (n, D)
            _check_rows(index, "image embeddings", len(images), len(rows))
            _write_embeddings(layout.emb_path(self.out, index, "image"), images)
        captioned = [i for i, row in enumerate(rows) if row["caption"] is not None]
        if self.collection.text:
            texts = torch.zeros(len(rows), dim)  # (n, D), zero rows where there is no caption
            tokens = [chunk.tokens for chunk, _ in parts if chunk.tokens is not None]
            if tokens:
                token_rows = torch.cat(tokens)  # (C, L)
                _check_rows(index, "tokenized captions", len(token_rows), len(captioned))
                texts[captioned] = self.encoder.texts(token_rows)
            _write_embeddings(layout.emb_path(self.out, index, "text"), texts)
        write_table(layout.metadata_path(self.out, index), rows, layout.METADATA_TYPES)
        skipped = [entry for chunk, _ in parts for entry in chunk.skipped]
        seconds = time.perf_counter() - assembly.started
        n_images = len(rows) if self.collection.images else 0
        stats = {
            "partition": index,
            "rows": len(rows),
            "images": n_images,
            "captions": len(captioned),
            "seen": len(rows) + len(skipped),
            "skipped": len(skipped),
            "skipped_by_reason": dict(sorted(Counter(e["reason"] for e in skipped).items())),
            "skipped_samples": skipped,
            "warnings": [entry for chunk, _ in parts for entry in chunk.warnings],
            "shards": list(self.collection.partitions[index].shards),
            "seconds": round(seconds, 3),
            "images_per_second": round(n_images / seconds, 1) if seconds > 0 else 0.0,
        }
        layout.stats_path(self.out, index).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(layout.stats_path(self.out, index), stats)
        return stats


def _check_rows(index: int, what: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(
            f"partition {index}: {got} {what} for {expected} metadata rows (a clipforge bug)"
        )
