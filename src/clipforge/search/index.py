"""Build, save, load and query the FAISS index of an embedded collection.

::

    build_index(EMB_DIR, OUT_DIR)            -> OUT_DIR/image.index + OUT_DIR/index_info.json
    load_index(OUT_DIR).search(queries, k)   -> scores (n, k) float32, ids (n, k) int64

Ids are the collection's global row ids (``layout.py``) whatever the index kind: every vector
goes in with ``add_with_ids``, one chunk of one partition at a time (``add_chunk``), so the
collection is never in memory as a whole (the index itself is, of course). A sharded build
trains once, fills one copy of the trained index per partition, writes it to a shard file and
merges the shards' inverted lists into the first: the merged index holds the same lists in the
same order as one filled in one go, so it returns the same results.

The index file is written first and ``index_info.json`` last, both atomically, so a directory
with an info file holds a complete index; the info records the plan, the ids (partitions and
their row counts), the tuned search parameters with the recall and latency measured against
exact search, timings and the embeddings path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from clipforge.atomic import atomic_path, write_json_atomic
from clipforge.search.configs import IndexConfig
from clipforge.search.index_choice import (
    HNSW_EF_CONSTRUCTION,
    HNSW_M,
    OPQ_FIRST_NITER_PQ,
    OPQ_NITER,
    PQ_NBITS,
    PQ_TRAIN_POINTS,
    IndexPlan,
    plan_index,
)
from clipforge.search.index_tune import RECALL_K, UNTUNED, held_out_queries, set_search_params, tune
from clipforge.search.vectors import VectorBlock, VectorSource
from clipforge.version import __version__

log = logging.getLogger(__name__)

INFO_FILE = "index_info.json"
_REQUIRED_KEYS = ("index_file", "kind", "dim", "ntotal", "search_params")
# plan_index's options, every one of them a field of IndexConfig.
_PLAN_KEYS = [
    p.name for p in inspect.signature(plan_index).parameters.values() if p.kind == p.KEYWORD_ONLY
]


class SearchIndex:
    """A loaded index: ``search`` returns global ids with inner-product scores.

    ``index`` is the FAISS index itself, ``info`` the contents of ``index_info.json``.
    Searching is safe from several threads at once (FAISS CPU indices only read during search;
    the tuned parameters are set once, when loading).
    """

    def __init__(self, index: faiss.Index, info: dict[str, Any]) -> None:
        self.index = index
        self.info = info
        self.dim = int(index.d)
        self.ntotal = int(index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of each query (n, D) float32 (unit norm): scores (n, k), ids (n, k) int64.

        Scores descend along each row; an approximate index may return fewer than ``k``
        results, padded with id -1. ``k`` must lie in ``[1, ntotal]``.
        """
        x = self._queries(queries)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.ntotal:
            raise ValueError(
                f"k must be an integer in [1, {self.ntotal}] (the index size), got {k!r}"
            )
        return self.index.search(x, int(k))

    def range_search(
        self, queries: np.ndarray, min_score: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All results scoring ``>= min_score`` for each query (n, D), FAISS-style.

        Returns ``lims`` (n + 1,) int64, ``scores`` and ``ids`` (lims[-1],): the results of query
        ``i`` are ``ids[lims[i]:lims[i + 1]]``, in no particular order.
        """
        x = self._queries(queries)
        # FAISS keeps scores strictly above the radius; step just below to keep ``>= min_score``.
        radius = float(np.nextafter(np.float32(min_score), -2))
        lims, scores, ids = self.index.range_search(x, radius)
        lims = lims.astype(np.int64)  # FAISS returns uint64
        keep = scores >= min_score
        query_of = np.repeat(np.arange(len(x)), np.diff(lims))  # (lims[-1],)
        counts = np.bincount(query_of[keep], minlength=len(x))  # (n,)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), scores[keep], ids[keep]

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        x = np.asarray(queries)
        if x.ndim != 2:
            raise ValueError(f"queries must be a 2-D array (n, {self.dim}), got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise ValueError(
                f"queries have dimension {x.shape[1]}, the index has dimension {self.dim}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("queries contain NaN or infinite values")
        return x


def build_index(
    emb_dir: str | os.PathLike, out_dir: str | os.PathLike, **options: Any
) -> dict[str, Any]:
    """Build, tune and save the index of a collection's vectors; return its info.

    ``options`` are the fields of :class:`~clipforge.search.configs.IndexConfig` (their help
    says what each does; the kind rules are in ``index_choice``), checked before any vector is
    read. ``n_queries`` sampled rows measure recall@10 against exact search and tune
    nprobe/efSearch to the smallest value reaching ``recall_target`` within the latency budget.
    """
    config = IndexConfig(embeddings=str(emb_dir), out=str(out_dir), **options)
    start = time.perf_counter()
    source = VectorSource.from_collection(emb_dir, config.modality)
    plan = plan_index(source.ntotal, source.dim, **{k: getattr(config, k) for k in _PLAN_KEYS})
    log.info("building %s (%s) over %d %s vectors of dimension %d: %s", plan.kind, plan.factory,
             source.ntotal, config.modality, source.dim, plan.choice)  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = train_index(plan, source, seed=config.seed)
    trained = time.perf_counter()
    if plan.sharded:
        index = _build_sharded(index, source, out / f".{config.modality}.shards")
    else:
        fill_index(index, source)
    if index.ntotal != source.ntotal:
        raise RuntimeError(f"index holds {index.ntotal} vectors, expected {source.ntotal}")
    added = time.perf_counter()
    k = min(RECALL_K, source.ntotal - 1)  # 0: no other row to find, nothing to tune
    tuning = UNTUNED
    if k >= 1:
        held = held_out_queries(source, config.n_queries, k, config.seed)
        tuning = tune(index, plan, held, source, config.recall_target, config.latency_budget_ms)
    timings = {"train_s": trained - start, "add_s": added - trained,
               "evaluate_s": time.perf_counter() - added}  # fmt: skip
    index_file = f"{config.modality}.index"
    with atomic_path(out / index_file) as tmp:
        faiss.write_index(index, str(tmp))
    hnsw = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if plan.kind == "hnsw" else None
    chosen = tuning.chosen
    info = {
        "modality": config.modality,
        "index_file": index_file,
        "requested_kind": config.kind,
        **dataclasses.asdict(plan),
        "fallbacks": list(plan.fallbacks),
        "metric": "inner_product",
        "hnsw": hnsw,
        "seed": config.seed,
        "dim": source.dim,  # what the ids mean: global row ids over these partitions
        "ntotal": source.ntotal,
        "total_rows": source.total_rows,
        "skipped_zero_rows": source.total_rows - source.ntotal,
        "partitions": [p.number for p in source.partitions],
        "partition_rows": [p.rows for p in source.partitions],
        "embeddings": str(Path(emb_dir).resolve()),
        "search_params": tuning.search_params,
        "recall_at_10": chosen.recall,
        "recall_k": k,
        **{f"latency_ms_{s}": chosen.latency_ms.get(s) for s in ("mean", "p50", "p99")},
        "recall_target": config.recall_target,
        "latency_budget_ms": config.latency_budget_ms,
        "target_met": tuning.target_met,
        "warnings": [tuning.warning] if tuning.warning else [],
        "tuning": [p.info() for p in tuning.sweep],
        "memory_budget_gb": config.memory_budget_gb,
        "index_bytes": (out / index_file).stat().st_size,
        "build_seconds": time.perf_counter() - start,
        "timings": timings,
        "clipforge_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / INFO_FILE, info)
    log.info("wrote %s: recall@%d %s, %s ms/query", out / index_file, k, chosen.recall,
             chosen.latency_ms.get("mean"))  # fmt: skip
    return info


def load_index(index_dir: str | os.PathLike) -> SearchIndex:
    """The index in ``index_dir`` with its tuned search parameters applied.

    Raises FileNotFoundError for a missing info or index file and ValueError for an unreadable
    one or one that disagrees with its info, each naming the path.
    """
    info_path = Path(index_dir) / INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path}: missing; build an index with `clipforge index`")
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{info_path}: not valid JSON ({err})") from err
    missing = [key for key in _REQUIRED_KEYS if not isinstance(info, dict) or key not in info]
    if missing:
        raise ValueError(f"{info_path}: missing keys {missing}")
    index_path = Path(index_dir) / Path(info["index_file"]).name
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: missing (named by {info_path})")
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[-1]
        raise ValueError(f"{index_path}: not a readable FAISS index ({reason})") from err
    if (index.d, index.ntotal) != (info["dim"], info["ntotal"]):
        raise ValueError(
            f"{index_path} holds {index.ntotal} vectors of dimension {index.d} but {info_path} "
            f"says {info['ntotal']} of dimension {info['dim']}; rebuild the index"
        )
    set_search_params(index, info["search_params"])
    return SearchIndex(index, info)


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
    index: faiss.Index, source: VectorSource, partition: VectorBlock | None = None
) -> faiss.Index:
    """Add every vector of ``source`` (of one ``partition`` when given) to ``index`` under its
    global id, in id order; returns ``index``."""
    for ids, x in source.chunks(partition=partition):
        add_chunk(index, ids, x)
    return index


def _build_sharded(trained: faiss.Index, source: VectorSource, shard_dir: Path) -> faiss.Index:
    """One copy of ``trained`` filled per partition and written under ``shard_dir`` (removed
    once merged), then every shard's inverted lists merged into the first, in partition order.

    The shards come from one trained index (same quantizer and codebooks): FAISS checks only
    that the shapes agree, so merging shards trained apart would give wrong results.
    """
    if shard_dir.exists():
        shutil.rmtree(shard_dir)  # leftovers of an interrupted build, from another trained index
    shard_dir.mkdir(parents=True)
    blob = np.frombuffer(faiss.serialize_index(trained).tobytes(), dtype=np.uint8)
    paths = [shard_dir / f"shard_{p.number:05d}.index" for p in source.partitions]
    for p, path in zip(source.partitions, paths, strict=True):
        with atomic_path(path) as tmp:
            faiss.write_index(fill_index(faiss.deserialize_index(blob), source, p), str(tmp))
        log.info("built shard %s", path)
    merged = faiss.read_index(str(paths[0]))
    lists = faiss.extract_index_ivf(merged)
    for path in paths[1:]:
        shard = faiss.read_index(str(path))  # kept in a name: it owns the lists merged from
        lists.merge_from(faiss.extract_index_ivf(shard), 0)
    merged.ntotal = lists.ntotal  # a wrapper (OPQ pre-transform) keeps its own count
    shutil.rmtree(shard_dir)
    return merged
