"""Which FAISS index to build for n vectors of dimension D under a memory and latency budget.

The rules, cheapest adequate index first (all indices use inner product on unit vectors):

* **flat** (exact) when one query's scan of ``n * D`` floats fits the latency budget at
  ``FLAT_SCAN_FLOATS_PER_MS``: with the default 10 ms budget, up to ~49k vectors at D = 512.
* **hnsw** (``HNSW32,Flat``) up to ``HNSW_MAX_VECTORS`` when its graph fits the budget: the best
  recall per millisecond of the four, but it cannot be trained on a sample or sharded, and its
  build cost grows like ``n log n``, so beyond 1M vectors the IVF kinds take over.
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
How the constants below were measured is in ``docs/search.md``.
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

FLAT_SCAN_FLOATS_PER_MS = 2.5e6  # a one-thread scan, with a margin for load
HNSW_M = 32  # graph degree; FAISS's usual choice for D in the hundreds
HNSW_EF_CONSTRUCTION = 40  # FAISS's default
HNSW_MAX_VECTORS = 1_000_000
SHARD_ABOVE = 2_000_000  # IVF builds above this many vectors are built per partition and merged
TRAIN_POINTS_PER_LIST = 40
PQ_NBITS = 8
PQ_MIN_TRAIN = 39 * 2**PQ_NBITS  # fewer and FAISS's PQ k-means is starved
# Points for the PQ and OPQ k-means (64 per centroid of each 256-centroid sub-quantizer, a
# quarter of FAISS's default) and OPQ rounds (FAISS's 50, with 40 k-means iterations in the
# first, cost many times the PQ training itself for the same error).
PQ_TRAIN_POINTS = 2**14
OPQ_NITER = 10
OPQ_FIRST_NITER_PQ = 10
# Dimensions per sub-quantizer: FAISS's k-means takes a slow path on 4-d sub-vectors, so codes
# take at most D/8 bytes.
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
    memory_bytes_estimate: int  # of the built index in memory
    choice: str  # why this kind
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
    codebooks = 4 * dim * dim + 4 * 2**PQ_NBITS * dim  # ivf-pq
    return n * (pq_m * PQ_NBITS // 8 + ID_BYTES) + nlist * 4 * dim + codebooks


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
        kind, choice = _auto_kind(n, dim, budget, latency_budget_ms, lists, sharded)
    else:
        choice = f"kind {kind!r} requested"
    if sharded and kind not in IVF_KINDS:
        raise ValueError(f"sharded builds need an IVF kind {IVF_KINDS}, not {kind!r}")
    fallbacks: list[str] = []
    n_train, m = 0, None
    if kind in IVF_KINDS:
        kind, lists, n_train = _fit_training(kind, n, lists, train_size, fallbacks)
    ivf = kind in IVF_KINDS  # flat and hnsw need no training, lists or shards
    if kind == "ivf-pq":
        m = pq_m or _pq_m_for_budget(n, dim, lists, budget, required=auto)
    factory = {
        "flat": "IDMap,Flat",
        "hnsw": f"IDMap,HNSW{HNSW_M},Flat",
        "ivf-flat": f"IVF{lists},Flat",
        # np: no polysemous training, which serves Hamming-filtered search (unused here) and
        # took 9x as long as the PQ training itself in a measurement at 10k x 32
        "ivf-pq": f"OPQ{m},IVF{lists},PQ{m}x{PQ_NBITS}np",
    }[kind]
    memory = estimate_memory_bytes(kind, n, dim, nlist=lists if ivf else 0, pq_m=m or 0)
    if memory > budget:
        _fallback(
            fallbacks,
            f"{kind} needs ~{memory / GIB:.3g} GiB, over the {budget / GIB:.3g} GiB "
            "memory budget; building it anyway because it was requested",
        )
    shard = ivf and (n > SHARD_ABOVE if sharded is None else sharded)
    nlist = lists if ivf else None
    return IndexPlan(kind, factory, nlist, m, n_train, shard, memory, choice, tuple(fallbacks))


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
