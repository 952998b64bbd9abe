"""Build, tune, save, load and query the FAISS index of an embedded collection.

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

Tuning measures the index against exact search and sets its search-time knob (nprobe,
efSearch). Held-out queries are sampled rows of the collection (seeded). A query's own row is
left out of both the exact and the approximate result lists (search ``k + 1``, drop the query's
id), so recall measures finding the *other* neighbours; otherwise each query would earn one easy
hit.

Recall@k is tie-aware: a returned id counts as a hit when its exact score is at least the k-th
exact score minus ``TIE_TOLERANCE``, and a query scores ``min(hits, k) / k``. With distinct
scores this is the usual ``|found & exact| / k``; with exact duplicates, common in web
collections, returning one copy instead of another is not counted as a miss.

Tuning raises the knob geometrically (x2) until recall reaches the target, then bisects down to
the smallest value that still reaches it (recall grows with nprobe/efSearch). It gives up early
when two doublings in a row gained less than ``PLATEAU_GAIN``: then the codes, not the search,
limit recall (IVF-PQ), and larger values only cost time. Latency is the time of single-query
searches on one thread, in milliseconds: what a server answering one request per core sees.
(FAISS's OpenMP threads speed up batches, not single queries, and on a busy machine their
barriers turn a 0.1 ms search into a wait for a descheduled thread.)
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
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
from clipforge.search.layout import read_json
from clipforge.search.vectors import VectorBlock, VectorSource
from clipforge.version import __version__

log = logging.getLogger(__name__)

INFO_FILE = "index_info.json"
RECALL_K = 10
TIE_TOLERANCE = 1e-5  # float32 rounding of unit-vector dot products is ~1e-7
LATENCY_QUERIES = 200
WARMUP_QUERIES = 5
KNOBS = {"ivf-flat": ("nprobe", 1), "ivf-pq": ("nprobe", 1), "hnsw": ("efSearch", 16)}
EF_SEARCH_MAX = 4096
PLATEAU_GAIN = 1e-3
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
    what = f"{source.ntotal} {config.modality} vectors of dimension {source.dim}"
    log.info("building %s (%s) over %s: %s", plan.kind, plan.factory, what, plan.choice)
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
    seconds = np.diff([start, trained, added, time.perf_counter()]).tolist()
    timings = dict(zip(("train_s", "add_s", "evaluate_s"), seconds, strict=True))
    index_file = f"{config.modality}.index"
    with atomic_path(out / index_file) as tmp:
        faiss.write_index(index, str(tmp))
    hnsw = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if plan.kind == "hnsw" else None
    chosen = tuning.chosen
    info = {
        "modality": config.modality,
        "index_file": index_file,
        "requested_kind": config.kind,
        **asdict(plan),
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
    figures = (out / index_file, k, chosen.recall, chosen.latency_ms.get("mean"))
    log.info("wrote %s: recall@%d %s, %s ms/query", *figures)
    return info


def load_index(index_dir: str | os.PathLike) -> SearchIndex:
    """The index in ``index_dir`` with its tuned search parameters applied.

    Raises FileNotFoundError for a missing info or index file and ValueError for an unreadable
    one or one that disagrees with its info, each naming the path.
    """
    info_path = Path(index_dir) / INFO_FILE
    info = read_json(info_path, f"{info_path}: missing; build an index with `clipforge index`")
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


@dataclass(frozen=True)
class HeldOut:
    """Queries with their exact neighbours, the query's own row left out.

    ``ids`` (q,) int64, ``queries`` (q, D) float32, ``exact_scores`` (q, k) float32 descending,
    ``exact_ids`` (q, k) int64.
    """

    ids: np.ndarray
    queries: np.ndarray
    exact_scores: np.ndarray
    exact_ids: np.ndarray

    @property
    def k(self) -> int:
        return self.exact_ids.shape[1]


@dataclass(frozen=True)
class Point:
    """One measured setting: knob value (None for flat), recall, and latency figures in ms."""

    value: int | None
    recall: float
    latency_ms: dict[str, float]

    def info(self) -> dict[str, float | None]:
        """The point as ``index_info.json`` records it."""
        latency = {f"latency_ms_{key}": ms for key, ms in self.latency_ms.items()}
        return {"value": self.value, "recall": self.recall, **latency}


@dataclass(frozen=True)
class Tuning:
    """The chosen setting and everything measured on the way."""

    param: str | None  # "nprobe", "efSearch", or None for flat
    chosen: Point
    target_met: bool
    sweep: list[Point] = field(default_factory=list)
    warning: str | None = None

    @property
    def search_params(self) -> dict[str, int]:
        return {} if self.param is None else {self.param: self.chosen.value}


UNTUNED = Tuning(None, Point(None, None, {}), None)  # too few vectors to measure anything


def held_out_queries(source: VectorSource, n_queries: int, k: int, seed: int) -> HeldOut:
    """``n_queries`` seeded sample rows and their exact top-``k`` among the other vectors.

    The exact search streams the collection chunk by chunk through FAISS's brute-force kNN and
    keeps the running top ``k + 1`` in a heap, so memory stays at one chunk plus (q, k + 1).
    """
    ids = source.sample_ids(n_queries, np.random.default_rng([seed, 1]))
    queries = source.take(ids)
    heap = faiss.ResultHeap(len(ids), k + 1, keep_max=True)
    for chunk_ids, x in source.chunks():
        scores, rows = faiss.knn(queries, x, min(k + 1, len(x)), metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(scores, chunk_ids[rows])
    heap.finalize()
    exact_scores, exact_ids = drop_self(heap.D, heap.I, ids, k)
    return HeldOut(ids, queries, exact_scores, exact_ids)


def drop_self(
    scores: np.ndarray, ids: np.ndarray, self_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` results (q, k) of each row once the query's own id is removed."""
    keep_first = np.argsort(ids == self_ids[:, None], axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, keep_first, 1), np.take_along_axis(ids, keep_first, 1)


def recall_at_k(found_ids: np.ndarray, held: HeldOut, source: VectorSource) -> float:
    """Tie-aware recall (module doc) of ``found_ids`` (q, k) for ``held``; -1 ids are misses."""
    found = found_ids >= 0
    true_scores = np.full(found_ids.shape, -np.inf, dtype=np.float32)
    rows = np.nonzero(found)[0]
    vectors = source.take(found_ids[found])  # (found, D)
    true_scores[found] = np.einsum("ij,ij->i", vectors, held.queries[rows])
    kth = held.exact_scores[:, -1:]  # (q, 1)
    hits = (true_scores >= kth - TIE_TOLERANCE).sum(axis=1)
    return float(np.minimum(hits, held.k).mean() / held.k)


def measure_latency(index: faiss.Index, queries: np.ndarray, k: int) -> dict[str, float]:
    """Mean, p50 and p99 (ms) of one-thread single-query searches of the first queries."""
    queries = queries[:LATENCY_QUERIES]
    ms = np.empty(len(queries))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for q in queries[:WARMUP_QUERIES]:
            index.search(q[None], k)
        for i, q in enumerate(queries):
            start = time.perf_counter()
            index.search(q[None], k)
            ms[i] = 1000 * (time.perf_counter() - start)
    finally:
        faiss.omp_set_num_threads(threads)
    return {
        "mean": float(ms.mean()),
        "p50": float(np.median(ms)),
        "p99": float(np.percentile(ms, 99)),
    }


def set_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    """Apply ``{"nprobe": 16}`` / ``{"efSearch": 64}`` through any wrapper (IDMap, OPQ)."""
    space = faiss.ParameterSpace()
    for name, value in params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as err:
            raise ValueError(f"cannot set search parameter {name}={value} on this index") from err


def tune(
    index: faiss.Index,
    plan: IndexPlan,
    held: HeldOut,
    source: VectorSource,
    recall_target: float,
    latency_budget_ms: float,
) -> Tuning:
    """Find the smallest knob value of ``plan``'s kind reaching ``recall_target`` within
    ``latency_budget_ms``.

    If no value does, the highest-recall value within the latency budget is used (or the
    highest-recall value of all when none is fast enough) and ``warning`` says so. The chosen
    value is left set on ``index``.
    """

    def measure(value: int | None) -> Point:
        if value is not None:
            set_search_params(index, {param: value})
        scores, ids = index.search(held.queries, held.k + 1)
        found = drop_self(scores, ids, held.ids, held.k)[1]  # (q, k)
        point = Point(
            value, recall_at_k(found, held, source), measure_latency(index, held.queries, held.k)
        )
        ms = point.latency_ms["mean"]
        log.info("%s=%s: recall@%d %.4f, %.3g ms/query", param, value, held.k, point.recall, ms)
        return point

    param, start = KNOBS.get(plan.kind, (None, None))
    if param is None:
        points = [measure(None)]
    else:
        top = plan.nlist if param == "nprobe" else EF_SEARCH_MAX
        points = sweep(measure, min(start, top), top, recall_target, latency_budget_ms)
    tuning = choose(param, points, recall_target, latency_budget_ms)
    set_search_params(index, tuning.search_params)  # {} for flat
    if tuning.warning:
        log.warning("%s", tuning.warning)
    return tuning


def sweep(
    measure: Callable[[int], Point], start: int, top: int, target: float, budget: float
) -> list[Point]:
    """Double from ``start`` until recall >= target (or a plateau, too slow, ``top``); bisect."""
    points: dict[int, Point] = {}
    below, reached, value, recalls = None, None, start, []
    while True:
        points[value] = measure(value)
        if points[value].recall >= target:
            reached = value
            break
        below = value
        recalls.append(points[value].recall)
        plateau = len(recalls) >= 3 and recalls[-1] - recalls[-3] < PLATEAU_GAIN
        if plateau or points[value].latency_ms["mean"] > budget or value >= top:
            break
        value = min(2 * value, top)
    while below is not None and reached is not None and reached - below > 1:
        mid = (below + reached) // 2
        points[mid] = measure(mid)
        below, reached = (below, mid) if points[mid].recall >= target else (mid, reached)
    return [points[v] for v in sorted(points)]


def choose(param: str | None, points: list[Point], target: float, budget: float) -> Tuning:
    """The smallest value meeting both targets, else the best fast one (see ``tune``)."""

    def fast(p: Point) -> bool:
        return p.latency_ms["mean"] <= budget

    good = [p for p in points if p.recall >= target and fast(p)]
    if good:
        return Tuning(param, min(good, key=lambda p: p.value or 0), True, points)
    pool = [p for p in points if fast(p)] or points
    best = max(pool, key=lambda p: (p.recall, -(p.value or 0)))
    setting = "" if param is None else f" with {param}={best.value}"
    warning = (
        f"recall target {target} within {budget} ms/query not met: best{setting} reaches "
        f"recall {best.recall:.4f} at {best.latency_ms['mean']:.3g} ms/query"
    )
    return Tuning(param, best, False, points, warning)
