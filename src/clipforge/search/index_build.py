"""Build the FAISS index an :class:`IndexPlan` describes: train on a sample, add chunk by chunk.

Vectors reach the index one chunk of one partition at a time (``add_chunk``), always with their
global ids, so the collection is never in memory as a whole (the index itself is, of course).
A sharded build trains once, then fills one copy of the trained index per partition, writes it
to ``shard_dir`` and merges the shards' inverted lists into the first: the shards can be built
by separate processes (``build_shard``), and the merged index holds the same lists in the same
order as one filled in one go, so it returns the same results.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import faiss
import numpy as np

from clipforge.atomic import atomic_path
from clipforge.search.index_choice import (
    HNSW_EF_CONSTRUCTION,
    OPQ_FIRST_NITER_PQ,
    OPQ_NITER,
    PQ_NBITS,
    PQ_TRAIN_POINTS,
    IndexPlan,
)
from clipforge.search.vectors import VectorSource

log = logging.getLogger(__name__)


def train_index(plan: IndexPlan, source: VectorSource, *, seed: int) -> faiss.Index:
    """An empty index made from ``plan.factory``, trained on a seeded sample when it needs one."""
    index = faiss.index_factory(source.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if plan.kind == "hnsw":
        hnsw = faiss.downcast_index(faiss.downcast_index(index).index).hnsw
        hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if plan.kind == "ivf-pq":
        opq = faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
        opq.niter = OPQ_NITER
        opq.niter_pq_0 = OPQ_FIRST_NITER_PQ
        opq.max_train_points = PQ_TRAIN_POINTS
        pq = faiss.downcast_index(faiss.extract_index_ivf(index)).pq
        pq.cp.max_points_per_centroid = PQ_TRAIN_POINTS // 2**PQ_NBITS
    if plan.train_size:
        faiss.extract_index_ivf(index).cp.seed = seed
        sample = source.take(source.sample_ids(plan.train_size, np.random.default_rng(seed)))
        log.info("training %s on %d vectors", plan.factory, len(sample))
        index.train(sample)
    return index


def add_chunk(index: faiss.Index, ids: np.ndarray, x: np.ndarray) -> None:
    """Add ``x`` (m, D) float32 under global ``ids`` (m,) int64; the one place vectors go in."""
    index.add_with_ids(x, ids)


def fill_index(
    index: faiss.Index, source: VectorSource, partition: int | None = None
) -> faiss.Index:
    """Add every vector of ``source`` (of one ``partition`` when given) to ``index`` under its
    global id, in id order; returns ``index``."""
    for _, ids, x in source.chunks(partition=partition):
        add_chunk(index, ids, x)
    return index


def build_shard(trained: bytes, source: VectorSource, partition: int, path: Path) -> None:
    """Fill a copy of the serialised ``trained`` index with one partition; write it to ``path``."""
    shard = fill_index(
        faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8)), source, partition
    )
    with atomic_path(path) as tmp:
        faiss.write_index(shard, str(tmp))


def merge_shards(paths: list[Path]) -> faiss.Index:
    """One IVF index holding the lists of every shard in ``paths``, in the order given.

    The shards must come from one trained index (same quantizer and codebooks): FAISS checks
    only that the shapes agree, so merging shards trained apart would give wrong results.
    """
    merged = faiss.read_index(str(paths[0]))
    lists = faiss.extract_index_ivf(merged)
    for path in paths[1:]:
        shard = faiss.read_index(str(path))  # kept in a name: it owns the lists merged from
        lists.merge_from(faiss.extract_index_ivf(shard), 0)
    merged.ntotal = lists.ntotal  # a wrapper (OPQ pre-transform) keeps its own count
    return merged


def build_faiss_index(
    plan: IndexPlan, source: VectorSource, *, seed: int, shard_dir: Path
) -> tuple[faiss.Index, dict[str, float]]:
    """The filled index and the seconds spent training and adding (``train_s``, ``add_s``).

    A sharded plan writes its shards under ``shard_dir`` and removes them once merged.
    """
    start = time.perf_counter()
    index = train_index(plan, source, seed=seed)
    trained = time.perf_counter()
    if plan.sharded:
        index = _build_sharded(index, source, shard_dir)
    else:
        fill_index(index, source)
    timings = {"train_s": trained - start, "add_s": time.perf_counter() - trained}
    if index.ntotal != source.ntotal:
        raise RuntimeError(f"index holds {index.ntotal} vectors, expected {source.ntotal}")
    return index, timings


def _build_sharded(trained: faiss.Index, source: VectorSource, shard_dir: Path) -> faiss.Index:
    if shard_dir.exists():
        shutil.rmtree(shard_dir)  # leftovers of an interrupted build, from another trained index
    shard_dir.mkdir(parents=True)
    blob = faiss.serialize_index(trained).tobytes()
    paths = []
    for p in source.partitions:
        if p.n_valid:
            paths.append(shard_dir / f"shard_{p.number:05d}.index")
            build_shard(blob, source, p.number, paths[-1])
            log.info("built shard %s", paths[-1])
    merged = merge_shards(paths)
    shutil.rmtree(shard_dir)
    return merged
