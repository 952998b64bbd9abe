"""FAISS index kinds on synthetic clustered embeddings: build time, memory, latency, recall@10.

The vectors are ``--clusters`` random unit centres plus Gaussian noise of norm ``--noise``,
normalised (pairs in one cluster meet at cosine ~1 / (1 + noise^2)), written as a clipforge
collection of float16 partitions. Each kind is built through ``build_index(kind=...)``, which
trains on a sample, adds partition by partition, measures recall@10 of ``--queries`` held-out
rows against exact search and tunes nprobe / efSearch up to ``--recall-target``; this script
adds batched-query latency on the loaded index and prints one table row per (size, kind).

    python bench/bench_index.py [--sizes 100000,1000000] [--kinds flat,hnsw,ivf-flat,ivf-pq]
        [--dim 512] [--queries 500] [--threads 2] [--workdir DIR] [--out results.json]

Timings depend on what else the machine runs; on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from clipforge.search import layout
from clipforge.search.index import build_index, load_index
from clipforge.search.index_choice import KINDS

COLUMNS = ("n", "kind", "factory", "params", "build_s", "recall@10", "1q_mean_ms", "1q_p50_ms",
           "1q_p99_ms", "batch_ms/q", "mem_est_MB", "file_MB")  # fmt: skip


def write_clustered(root: Path, n: int, dim: int, args: argparse.Namespace) -> None:
    """``n`` clustered unit vectors as a collection of ``--partition-rows`` partitions."""
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((args.clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for sub in (layout.IMG_DIR, layout.STATS_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    info = {"model": "synthetic", "pretrained": None, "dim": dim}
    (root / layout.INFO_FILE).write_text(json.dumps(info))
    for part, start in enumerate(range(0, n, args.partition_rows)):
        rows = min(args.partition_rows, n - start)
        noise = rng.standard_normal((rows, dim)).astype(np.float32) * (args.noise / dim**0.5)
        x = centres[rng.integers(0, args.clusters, rows)] + noise  # (rows, D)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.save(layout.emb_path(root, part, "image"), x.astype(np.float16))
        layout.stats_path(root, part).write_text(json.dumps({"count": rows}))


def batched_ms_per_query(index_dir: Path, root: Path, n_queries: int, seed: int) -> float:
    """Milliseconds per query of one search of ``n_queries`` stored rows at k = 10."""
    index = load_index(index_dir)
    x = np.load(layout.emb_path(root, 0, "image"), mmap_mode="r")
    rows = np.sort(np.random.default_rng(seed + 7).choice(len(x), min(n_queries, len(x)), False))
    queries = np.asarray(x[rows], dtype=np.float32)
    index.search(queries[:10], 10)  # warm-up
    start = time.perf_counter()
    index.search(queries, 10)
    return 1000 * (time.perf_counter() - start) / len(queries)


def bench_one(root: Path, n: int, kind: str, args: argparse.Namespace) -> dict:
    out = args.workdir / f"index_{n}_{kind}"
    info = build_index(root, out, kind=kind, memory_budget_gb=args.memory_budget_gb,
                       recall_target=args.recall_target, latency_budget_ms=args.latency_budget_ms,
                       seed=args.seed, n_queries=args.queries)  # fmt: skip
    params = ",".join(f"{k}={v}" for k, v in info["search_params"].items()) or "-"
    row = {
        "n": n,
        "kind": info["kind"],
        "factory": info["factory"],
        "params": params,
        "build_s": round(info["build_seconds"] - info["timings"].get("evaluate_s", 0.0), 1),
        "recall@10": round(info["recall_at_10"], 4),
        "1q_mean_ms": round(info["latency_ms_mean"], 3),
        "1q_p50_ms": round(info["latency_ms_p50"], 3),
        "1q_p99_ms": round(info["latency_ms_p99"], 3),
        "batch_ms/q": round(batched_ms_per_query(out, root, args.queries, args.seed), 4),
        "mem_est_MB": round(info["memory_bytes_estimate"] / 2**20, 1),
        "file_MB": round(info["index_bytes"] / 2**20, 1),
        "target_met": info["target_met"],
        "timings": info["timings"],
    }
    if not args.keep:
        shutil.rmtree(out)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--partition-rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--recall-target", type=float, default=0.95)
    parser.add_argument("--latency-budget-ms", type=float, default=10.0)
    parser.add_argument("--memory-budget-gb", type=float, default=16.0)
    parser.add_argument("--threads", type=int, default=faiss.omp_get_max_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the collections and indices")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    faiss.omp_set_num_threads(args.threads)
    args.workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_index_"))
    print(f"faiss {faiss.__version__}, {args.threads} threads, dim {args.dim}, "
          f"{args.clusters} clusters, noise {args.noise}, {args.queries} queries")  # fmt: skip

    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        root = args.workdir / f"collection_{n}"
        start = time.perf_counter()
        write_clustered(root, n, args.dim, args)
        print(f"wrote {n} vectors in {time.perf_counter() - start:.1f} s", flush=True)
        for kind in args.kinds.split(","):
            rows.append(bench_one(root, n, kind, args))
            print(markdown(rows[-1:]), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=2) + "\n")
        if not args.keep:
            shutil.rmtree(root)
    print(markdown(rows))


if __name__ == "__main__":
    main()
