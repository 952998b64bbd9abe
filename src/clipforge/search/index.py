"""Build, save, load and query the FAISS index of an embedded collection.

::

    build_index(EMB_DIR, OUT_DIR)            -> OUT_DIR/image.index + OUT_DIR/index_info.json
    load_index(OUT_DIR).search(queries, k)   -> scores (n, k) float32, ids (n, k) int64

Ids are the collection's global row ids (``layout.py``) whatever the index kind: every vector
goes in with ``add_with_ids``. The index file is written first and ``index_info.json`` last,
both atomically, so a directory with an info file holds a complete index. The info records the
plan (kind, factory string, sizes, fallbacks), the ids (partitions, their row counts), the tuned
search parameters with the recall and latency measured against exact search, the memory
estimate, timings and the embeddings path. ``modality="text"`` indexes a collection's caption
vectors, skipping the all-zero rows of samples without a caption (see ``vectors.py``).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from clipforge.atomic import atomic_path, write_json_atomic
from clipforge.search.configs import IndexConfig
from clipforge.search.index_build import build_faiss_index
from clipforge.search.index_choice import HNSW_EF_CONSTRUCTION, HNSW_M, IndexPlan, plan_index
from clipforge.search.index_tune import RECALL_K, Tuning, held_out_queries, set_search_params, tune
from clipforge.search.vectors import VectorSource
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
        lims, scores, ids = self.index.range_search(
            x, float(np.nextafter(np.float32(min_score), -2))
        )
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

    ``options`` are the fields of :class:`~clipforge.search.configs.IndexConfig`, which checks
    them: ``modality`` picks the image or caption vectors; ``kind`` is "auto" or one of flat,
    hnsw, ivf-flat, ivf-pq (rules in ``index_choice``); ``train_size`` (IVF kinds), ``nlist``
    and ``pq_m`` override the automatic sizes; ``sharded`` builds IVF shards per partition and
    merges them (default: above 2M vectors). ``n_queries`` sampled rows measure recall@10
    against exact search and tune nprobe/efSearch to the smallest value reaching
    ``recall_target`` within ``latency_budget_ms`` per query.
    """
    config = IndexConfig(embeddings=str(emb_dir), out=str(out_dir), **options)
    start = time.perf_counter()
    source = VectorSource.from_collection(emb_dir, config.modality)
    plan = plan_index(
        source.ntotal, source.dim, **{key: getattr(config, key) for key in _PLAN_KEYS}
    )
    log.info(
        "building %s (%s) over %d %s vectors of dimension %d: %s",
        plan.kind,
        plan.factory,
        source.ntotal,
        config.modality,
        source.dim,
        plan.reason,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index, timings = build_faiss_index(
        plan, source, seed=config.seed, shard_dir=out / f".{config.modality}.shards"
    )
    evaluated = time.perf_counter()
    tuning, k = _evaluate(index, plan, source, config)
    timings["evaluate_s"] = time.perf_counter() - evaluated
    index_file = f"{config.modality}.index"
    with atomic_path(out / index_file) as tmp:
        faiss.write_index(index, str(tmp))
    info = {
        "modality": config.modality,
        "index_file": index_file,
        "requested_kind": config.kind,
        **_plan_info(plan, config.seed),
        **_source_info(source, emb_dir),
        **_tuning_info(tuning, k, config),
        "memory_budget_gb": config.memory_budget_gb,
        "index_bytes": (out / index_file).stat().st_size,
        "build_seconds": time.perf_counter() - start,
        "timings": timings,
        "clipforge_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(out / INFO_FILE, info)
    log.info(
        "wrote %s: recall@%d %s, %s ms/query",
        out / index_file,
        k,
        info["recall_at_10"],
        info["latency_ms_mean"],
    )
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


def _evaluate(
    index: faiss.Index, plan: IndexPlan, source: VectorSource, config: IndexConfig
) -> tuple[Tuning | None, int]:
    """Tune ``index`` on held-out rows; ``(None, 0)`` when there is no other row to find."""
    k = min(RECALL_K, source.ntotal - 1)
    if k < 1:
        return None, 0
    held = held_out_queries(source, config.n_queries, k, config.seed)
    tuning = tune(
        index,
        plan.kind,
        held,
        source,
        recall_target=config.recall_target,
        latency_budget_ms=config.latency_budget_ms,
        nlist=plan.nlist,
    )
    return tuning, k


def _source_info(source: VectorSource, emb_dir: str | os.PathLike) -> dict[str, Any]:
    """What the ids mean: global row ids over these partitions of this collection."""
    return {
        "dim": source.dim,
        "ntotal": source.ntotal,
        "total_rows": source.total_rows,
        "skipped_zero_rows": source.skipped_rows,
        "partitions": [p.number for p in source.partitions],
        "partition_rows": [p.rows for p in source.partitions],
        "embeddings": str(Path(emb_dir).resolve()),
    }


def _plan_info(plan: IndexPlan, seed: int) -> dict[str, Any]:
    hnsw = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION} if plan.kind == "hnsw" else None
    return {
        "kind": plan.kind,
        "factory": plan.factory,
        "metric": "inner_product",
        "choice": plan.reason,
        "fallbacks": list(plan.fallbacks),
        "nlist": plan.nlist,
        "pq_m": plan.pq_m,
        "hnsw": hnsw,
        "train_size": plan.train_size,
        "sharded": plan.sharded,
        "seed": seed,
        "memory_bytes_estimate": plan.memory_bytes,
    }


def _tuning_info(tuning: Tuning | None, k: int, config: IndexConfig) -> dict[str, Any]:
    """Tuned parameters and figures; None figures when there were too few vectors to measure."""
    chosen = tuning.chosen if tuning else None
    return {
        "search_params": tuning.search_params if tuning else {},
        "recall_at_10": chosen.recall if chosen else None,
        "recall_k": k,
        "latency_ms_mean": chosen.latency_ms["mean"] if chosen else None,
        "latency_ms_p50": chosen.latency_ms["p50"] if chosen else None,
        "latency_ms_p99": chosen.latency_ms["p99"] if chosen else None,
        "recall_target": config.recall_target,
        "latency_budget_ms": config.latency_budget_ms,
        "target_met": tuning.target_met if tuning else None,
        "warnings": [tuning.warning] if tuning and tuning.warning else [],
        "tuning": [
            {
                "value": p.value,
                "recall": p.recall,
                **{f"latency_ms_{s}": v for s, v in p.latency_ms.items()},
            }
            for p in (tuning.sweep if tuning else [])
        ],
    }
