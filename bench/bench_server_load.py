"""Load test of the search server: throughput and latency under concurrent clients.

Writes a synthetic collection of random unit vectors (the embedded layout of
``clipforge.search.layout``, with ``embed_info.json`` naming a saved model so text queries work),
builds its index with ``build_index``, starts ``clipforge.search.server.serve`` in a subprocess
on a free loopback port, then runs ``--clients`` threads that send ``--requests`` searches in
total, alternating text queries and embedding queries, and prints requests/s, p50/p99 latency
per query kind and the error count (anything but HTTP 200 is an error; it must be 0).

    python bench/bench_server_load.py [--vectors 50000] [--clients 8] [--requests 2000]
                                      [--model tiny] [--kind auto] [--k 10]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import clipforge
from clipforge.models.digest import weights_digest
from clipforge.search import layout
from clipforge.search.index import build_index

PARTITION_ROWS = 10_000
WORDS = ("red", "green", "blue", "yellow", "purple", "large", "small", "circle", "square", "star",
         "heart", "cross", "left", "right")  # fmt: skip


def write_collection(root: Path, model_dir: Path, n: int, seed: int) -> int:
    """Random unit vectors (n, D) in partitions of PARTITION_ROWS; returns D."""
    net = clipforge.create_model(str(model_dir))
    dim = net.config.embed_dim
    rng = np.random.default_rng(seed)
    for directory in (layout.IMG_DIR, layout.META_DIR, layout.STATS_DIR):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for partition, start in enumerate(range(0, n, PARTITION_ROWS)):
        rows = min(PARTITION_ROWS, n - start)
        x = rng.standard_normal((rows, dim)).astype(np.float32)  # (rows, D)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        np.save(layout.emb_path(root, partition, "image"), x.astype(np.float16))
        ids = range(start, start + rows)
        table = pa.table(
            {
                "key": [f"{i:09d}" for i in ids],
                "path": pa.nulls(rows, pa.string()),
                "member": pa.nulls(rows, pa.string()),
                "caption": [f"synthetic item {i}" for i in ids],
                "json": [json.dumps({"n": i}) for i in ids],
            }
        )
        pq.write_table(table, layout.metadata_path(root, partition))
        layout.stats_path(root, partition).write_text(json.dumps({"count": rows}))
    info = {"model": str(model_dir), "pretrained": None, "dim": dim, "image_roots": [],
            "weights_blake2b": weights_digest(net)}  # fmt: skip
    (root / layout.INFO_FILE).write_text(json.dumps(info))
    return dim


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(config: Path, port: int) -> subprocess.Popen:
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from clipforge.search.server import serve\n"
        f"serve({str(config)!r}, '127.0.0.1', {port}, log_level='warning')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not answer /health within 120 s")


def query_body(i: int, dim: int, k: int, rng: np.random.Generator) -> tuple[str, dict]:
    """Request ``i``: a text query for even i, an embedding query for odd i."""
    if i % 2 == 0:
        words = rng.choice(WORDS, size=6)
        return "text", {"text": f"a photo of a {' '.join(words)}", "k": k}
    vector = rng.standard_normal(dim)
    return "embedding", {"embedding": (vector / np.linalg.norm(vector)).tolist(), "k": k}


def run_clients(url: str, dim: int, args: argparse.Namespace) -> tuple[dict, float, list[str]]:
    """``(latencies by kind, wall seconds, errors)`` of ``args.requests`` requests."""
    latencies: dict[str, list[float]] = {"text": [], "embedding": []}
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))

    def client(worker: int) -> None:
        rng = np.random.default_rng(worker)
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in counter:  # a shared iterator hands out request numbers (atomic under GIL)
                kind, body = query_body(i, dim, args.k, rng)
                started = time.perf_counter()
                try:
                    response = http.post("/search", json=body)
                    ok = response.status_code == 200 and len(response.json()["results"]) == args.k
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as err:
                    problem = f"{type(err).__name__}: {err}"
                seconds = time.perf_counter() - started
                with lock:
                    latencies[kind].append(seconds)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(args.clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--model", default="tiny", help="model name or checkpoint for queries")
    parser.add_argument("--kind", default="auto", help="index kind for build_index")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model_dir = clipforge.save_model(clipforge.create_model(args.model), root / "model")
        dim = write_collection(root / "emb", model_dir, args.vectors, seed=0)
        info = build_index(root / "emb", root / "index", kind=args.kind, n_queries=200)
        config = root / "serve.json"
        config.write_text(json.dumps({"indices": {"bench": {"index": str(root / "index")}}}))
        port = free_port()
        server = start_server(config, port)
        url = f"http://127.0.0.1:{port}"
        try:
            for i in range(20):  # warm-up: model, index and connection paths
                httpx.post(
                    f"{url}/search", json=query_body(i, dim, args.k, np.random.default_rng(i))[1]
                )
            latencies, seconds, errors = run_clients(url, dim, args)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"collection: {args.vectors} vectors of dim {dim}, index {info['kind']} "
          f"({info.get('factory')}), model {args.model}, torch threads {torch.get_num_threads()}")  # fmt: skip
    print(f"load: {args.clients} concurrent clients, {args.requests} requests, k={args.k}")
    print(f"{'queries':<10} {'count':>6} {'p50 ms':>8} {'p99 ms':>8}")
    every = [t for kind in latencies for t in latencies[kind]]
    for kind, values in [*latencies.items(), ("all", every)]:
        ms = np.array(values) * 1000
        print(
            f"{kind:<10} {len(ms):>6} {np.percentile(ms, 50):>8.1f} {np.percentile(ms, 99):>8.1f}"
        )
    print(f"throughput: {args.requests / seconds:.1f} requests/s over {seconds:.1f} s")
    print(f"errors: {len(errors)}")
    for problem in errors[:5]:
        print(f"  {problem}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
