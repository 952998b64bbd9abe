"""Which FAISS index to build for n vectors of dimension D under a memory and latency budget.

The rules, cheapest adequate index first (all indices use inner product on unit vectors):

* **flat** (exact) when one query's scan of ``n * D`` floats fits the latency budget at
  ``FLAT_SCAN_FLOATS_PER_MS`` (2.5e6 floats/ms: a single-thread scan of 100k x 512 took
  ~15 ms on this project's 2-core AMD EPYC, i.e. ~3.4e6 floats/ms, minus a margin for load).
  With the default 10 ms budget that is up to ~49k vectors at D = 512. Exact, no training.
* **hnsw** (``HNSW32,Flat``) up to ``HNSW_MAX_VECTORS`` when its graph fits the budget: the best
  recall per millisecond of the four, but it cannot be trained on a sample or sharded, and its
  build cost grows like ``n log n`` (100k x 512 took 45 s on one core here), so beyond 1M vectors
  the IVF kinds take over.
* **ivf-flat** when the full vectors fit the budget: ``nlist`` lists of exact vectors.
* **ivf-pq** (``OPQm,IVFnlist,PQmx8np``) otherwise: the largest code of ``m`` bytes (``m`` divides D,
  at least 8 dimensions per sub-quantizer) that fits the budget; OPQ rotates the space first so
  that the sub-vectors carry equal variance, which lowers the quantisation error at no cost at
  search time.

``nlist = 4 * sqrt(n)``: a query costs ``nlist * D`` for the coarse search plus
``nprobe * (n / nlist) * D`` for the lists it scans; for a fixed ``nprobe`` the sum is smallest at
``nlist = sqrt(nprobe * n)``, and the tuned ``nprobe`` is typically ~16, hence ``4 * sqrt(n)``.
k-means needs at least ~39 training points per list (FAISS warns below that), so ``nlist`` is
capped at ``train_size // TRAIN_POINTS_PER_LIST`` and the default sample is
``TRAIN_POINTS_PER_LIST * nlist`` vectors (at least ``PQ_TRAIN_POINTS`` for PQ, whose 256-centroid
sub-quantizers want 64 points each). An impossible request (a PQ without enough training
vectors, lists without enough points) falls back to the nearest possible index; the fallback is
logged and recorded in the plan. Sharded builds (per-partition shards merged) are IVF only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from clipforge.search.configs import INDEX_KINDS, check_plan_options

log = logging.getLogger(__name__)

KINDS = INDEX_KINDS[1:]  # all but "auto"
IVF_KINDS = ("ivf-flat", "ivf-pq")
GIB = 2**30

FLAT_SCAN_FLOATS_PER_MS = 2.5e6
HNSW_M = 32  # graph degree; FAISS's usual choice for D in the hundreds
HNSW_EF_CONSTRUCTION = 40  # FAISS's default
HNSW_MAX_VECTORS = 1_000_000
SHARD_ABOVE = 2_000_000  # IVF builds above this many vectors are built per partition and merged
TRAIN_POINTS_PER_LIST = 40
PQ_NBITS = 8
PQ_MIN_TRAIN = 39 * 2**PQ_NBITS  # fewer and FAISS's PQ k-means is starved
# Points for the PQ and OPQ k-means: 64 per centroid of each 256-centroid sub-quantizer, a
# quarter of FAISS's default 65536. OPQ alternates PQ training with a rotation update; FAISS's
# defaults (50 rounds, 40 k-means iterations in the first) cost many times the PQ training
# itself. Measured on 20k correlated 128-d vectors (m = 32): OPQ halved the PQ error
# (0.085 -> 0.037), and 10 rounds (10 iterations first) on 16384 points reached 0.0366 in 36 s
# against 0.0373 in 57 s for (10 rounds, 40 iterations first, 65536 points).
PQ_TRAIN_POINTS = 2**14
OPQ_NITER = 10
OPQ_FIRST_NITER_PQ = 10
# Dimensions per sub-quantizer. FAISS's k-means takes a slow path on 4-d sub-vectors: training
# PQ128 on 50k x 512 took 76 s of CPU against 3.7 s for PQ64 (8-d), so codes take at most D/8 bytes.
PQ_MIN_DSUB = 8
ID_BYTES = 8


@dataclass(frozen=True)
class IndexPlan:
    """What to build: ``factory`` is the FAISS index_factory string (inner-product metric)."""

    kind: str
    factory: str
    nlist: int | None
    pq_m: int | None
    train_size: int  # vectors sampled for training; 0 for kinds that need none
    sharded: bool
    memory_bytes: int  # estimate of the built index in memory
    reason: str  # why this kind
    fallbacks: tuple[str, ...] = ()  # requests that could not be honoured, and what was done


def estimate_memory_bytes(kind: str, n: int, dim: int, *, nlist: int = 0, pq_m: int = 0) -> int:
    """Estimated resident size of a built index of ``n`` vectors (bytes).

    flat: ``n (4D + 8)``; hnsw adds ``2M`` level-0 links of 4 bytes (+5% for upper levels, 20 bytes
    of bookkeeping); IVF adds ``nlist`` float centroids; PQ stores ``m`` bytes per vector plus the
    ``D x D`` OPQ rotation and the ``256 x D`` codebooks. Ids take 8 bytes per vector everywhere.
    """
    if kind == "flat":
        return n * (4 * dim + ID_BYTES)
    if kind == "hnsw":
        return int(n * (4 * dim + ID_BYTES + 1.05 * 2 * HNSW_M * 4 + 20))
    if kind == "ivf-flat":
        return n * (4 * dim + ID_BYTES) + nlist * 4 * dim
    if kind == "ivf-pq":
        codebooks = 4 * dim * dim + 4 * 2**PQ_NBITS * dim
        return n * (pq_m * PQ_NBITS // 8 + ID_BYTES) + nlist * 4 * dim + codebooks
    raise ValueError(f"unknown index kind {kind!r}; expected one of {KINDS}")


def pq_sizes(dim: int) -> list[int]:
    """PQ code sizes for ``dim``: divisors leaving >= PQ_MIN_DSUB dims each, largest first."""
    return [m for m in range(dim // PQ_MIN_DSUB, 0, -1) if dim % m == 0]


def plan_index(
    n: int,
    dim: int,
    *,
    kind: str = "auto",
    memory_budget_gb: float = 4.0,
    latency_budget_ms: float = 10.0,
    train_size: int | None = None,
    nlist: int | None = None,
    pq_m: int | None = None,
    sharded: bool | None = None,
) -> IndexPlan:
    """Choose and size the index for ``n`` vectors of dimension ``dim`` (rules in the module doc).

    ``kind`` forces a kind ("auto" chooses); ``nlist`` and ``pq_m`` override the sizes;
    ``sharded=None`` shards IVF builds above ``SHARD_ABOVE`` vectors, True forces it (and, with
    ``kind="auto"``, an IVF kind). Raises ValueError naming the argument for bad values and when
    nothing fits ``memory_budget_gb``; a forced kind over budget is built with a warning.
    """
    check_plan_options(
        kind, memory_budget_gb, latency_budget_ms, train_size=train_size, nlist=nlist, pq_m=pq_m
    )
    if n < 1 or dim < 1:
        raise ValueError(f"cannot index {n} vectors of dimension {dim}")
    if pq_m is not None and dim % pq_m:
        raise ValueError(
            f"pq_m={pq_m} does not divide the dimension {dim}; choose from {pq_sizes(dim)}"
        )
    budget = int(memory_budget_gb * GIB)
    lists = nlist or max(1, round(4 * math.sqrt(n)))
    auto = kind == "auto"
    if auto:
        kind, reason = _auto_kind(n, dim, budget, latency_budget_ms, lists, sharded)
    else:
        reason = f"kind {kind!r} requested"
    if sharded and kind not in IVF_KINDS:
        raise ValueError(f"sharded builds need an IVF kind {IVF_KINDS}, not {kind!r}")
    fallbacks: list[str] = []
    if kind in IVF_KINDS:
        kind, lists, n_train = _fit_training(kind, n, lists, train_size, fallbacks)
    if kind not in IVF_KINDS:  # flat and hnsw need no training, lists or shards
        return _plan(kind, n, dim, budget, None, None, 0, False, reason, fallbacks)
    m = None
    if kind == "ivf-pq":
        m = pq_m or _pq_m_for_budget(n, dim, lists, budget, required=auto)
    shard = n > SHARD_ABOVE if sharded is None else sharded
    return _plan(kind, n, dim, budget, lists, m, n_train, shard, reason, fallbacks)


def _auto_kind(n, dim, budget, latency_budget_ms, lists, sharded) -> tuple[str, str]:
    """The first kind of flat > hnsw > ivf-flat > ivf-pq whose conditions hold, and why."""
    scan_ms = n * dim / FLAT_SCAN_FLOATS_PER_MS
    if not sharded:
        if scan_ms <= latency_budget_ms and estimate_memory_bytes("flat", n, dim) <= budget:
            return "flat", f"an exact scan (~{scan_ms:.2g} ms/query) fits {latency_budget_ms} ms"
        if n <= HNSW_MAX_VECTORS and estimate_memory_bytes("hnsw", n, dim) <= budget:
            return "hnsw", f"{n} vectors <= {HNSW_MAX_VECTORS} and the HNSW graph fits the budget"
    if estimate_memory_bytes("ivf-flat", n, dim, nlist=lists) <= budget:
        return "ivf-flat", "the full vectors fit the memory budget in inverted lists"
    return "ivf-pq", "the full vectors exceed the memory budget; PQ codes are used"


def _fit_training(kind, n, lists, train_size, fallbacks) -> tuple[str, int | None, int]:
    """Size the training sample and cap ``nlist`` by it; fall back when training is impossible."""
    default = TRAIN_POINTS_PER_LIST * lists
    if kind == "ivf-pq":
        default = max(default, PQ_TRAIN_POINTS)
    n_train = min(n, train_size or default)
    if kind == "ivf-pq" and n_train < PQ_MIN_TRAIN:
        _fallback(
            fallbacks,
            f"ivf-pq needs >= {PQ_MIN_TRAIN} training vectors, only {n_train} available: "
            "building ivf-flat instead",
        )
        kind = "ivf-flat"
    most = n_train // TRAIN_POINTS_PER_LIST
    if most < 1:
        _fallback(fallbacks, f"{n_train} training vectors cannot train any IVF list: building flat")
        return "flat", None, 0
    if lists > most:
        _fallback(
            fallbacks,
            f"nlist lowered from {lists} to {most}: {n_train} training vectors give "
            f"{TRAIN_POINTS_PER_LIST} per list at most",
        )
        lists = most
    return kind, lists, n_train


def _pq_m_for_budget(n: int, dim: int, nlist: int, budget: int, *, required: bool) -> int:
    """The largest allowed PQ code size whose index fits ``budget``.

    When none fits: a ValueError if ``required``, else the smallest size (the caller warns).
    """
    sizes = pq_sizes(dim) or [1]
    for m in sizes:
        if estimate_memory_bytes("ivf-pq", n, dim, nlist=nlist, pq_m=m) <= budget:
            return m
    if not required:
        return sizes[-1]
    need = estimate_memory_bytes("ivf-pq", n, dim, nlist=nlist, pq_m=sizes[-1])
    raise ValueError(
        f"no index fits memory_budget_gb={budget / GIB:.3g}: even IVF-PQ with {sizes[-1]}-byte "
        f"codes needs {need / GIB:.3g} GiB for {n} vectors of dimension {dim}"
    )


def _fallback(fallbacks: list[str], message: str) -> None:
    log.warning("index plan: %s", message)
    fallbacks.append(message)


def _plan(kind, n, dim, budget, nlist, pq_m, n_train, sharded, reason, fallbacks) -> IndexPlan:
    factory = {
        "flat": "IDMap,Flat",
        "hnsw": f"IDMap,HNSW{HNSW_M},Flat",
        "ivf-flat": f"IVF{nlist},Flat",
        # np: no polysemous training, which serves Hamming-filtered search (unused here) and
        # took 9x as long as the PQ training itself in a measurement at 10k x 32
        "ivf-pq": f"OPQ{pq_m},IVF{nlist},PQ{pq_m}x{PQ_NBITS}np",
    }[kind]
    memory = estimate_memory_bytes(kind, n, dim, nlist=nlist or 0, pq_m=pq_m or 0)
    if memory > budget:
        _fallback(
            fallbacks,
            f"{kind} needs ~{memory / GIB:.3g} GiB, over the {budget / GIB:.3g} GiB "
            "memory budget; building it anyway because it was requested",
        )
    return IndexPlan(kind, factory, nlist, pq_m, n_train, sharded, memory, reason, tuple(fallbacks))
