"""Measure an index against exact search and tune its search-time knob (nprobe, efSearch).

Held-out queries are sampled rows of the collection (seeded). A query's own row is left out of
both the exact and the approximate result lists (search ``k + 1``, drop the query's id), so
recall measures finding the *other* neighbours; otherwise each query would earn one easy hit.

Recall@k is tie-aware: a returned id counts as a hit when its exact score is at least the k-th
exact score minus ``TIE_TOLERANCE``, and a query scores ``min(hits, k) / k``. With distinct
scores this is the usual ``|found & exact| / k``; with exact duplicates, common in web
collections, returning one copy instead of another is not counted as a miss.

Tuning raises the knob geometrically (x2) until recall reaches the target, then bisects down to
the smallest value that still reaches it (recall grows with nprobe/efSearch). It gives up early
when two doublings in a row gained less than ``PLATEAU_GAIN``: then the codes, not the search,
limit recall (IVF-PQ), and larger values only cost time. Latency is the
time of single-query searches on one thread, in milliseconds: what a server answering one
request per core sees. (FAISS's OpenMP threads speed up batches, not single queries, and on a
busy machine their barriers turn a 0.1 ms search into a wait for a descheduled thread.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

from clipforge.search.index_choice import IndexPlan
from clipforge.search.vectors import VectorSource

log = logging.getLogger(__name__)

RECALL_K = 10
TIE_TOLERANCE = 1e-5  # float32 rounding of unit-vector dot products is ~1e-7
LATENCY_QUERIES = 200
WARMUP_QUERIES = 5
KNOBS = {"ivf-flat": ("nprobe", 1), "ivf-pq": ("nprobe", 1), "hnsw": ("efSearch", 16)}
EF_SEARCH_MAX = 4096
PLATEAU_GAIN = 1e-3


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
    if param is not None:
        set_search_params(index, tuning.search_params)
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
