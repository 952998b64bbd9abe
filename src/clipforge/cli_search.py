"""``clipforge embed``, ``index``, ``dedup`` and ``serve``: thin wrappers over ``clipforge.search``.

Each command parses its flags and calls one library function; input errors (a missing folder,
a changed model, a bad index kind) come back as ``ValueError``/``FileNotFoundError`` naming the
input and are printed as one line by ``clipforge.cli.main``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()


class IndexKind(str, Enum):
    auto = "auto"
    flat = "flat"
    hnsw = "hnsw"
    ivf_flat = "ivf-flat"
    ivf_pq = "ivf-pq"


class Modality(str, Enum):
    image = "image"
    text = "text"


class InputFormat(str, Enum):
    auto = "auto"
    folder = "folder"
    wds = "wds"
    table = "table"


def embed(
    inputs: Annotated[
        list[str], typer.Argument(help="Image folders, shard paths/brace patterns, or CSV/parquet.")
    ],
    out: Annotated[Path, typer.Option(help="Output directory of the embedded collection.")],
    model: Annotated[str, typer.Option(help="Model name or config JSON.")],
    pretrained: Annotated[str | None, typer.Option(help="Weights file or hf-hub:org/name.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 128,
    partition_size: Annotated[
        int, typer.Option(help="Samples per partition (folders, tables).")
    ] = 10_000,
    shards_per_partition: Annotated[int, typer.Option(help="Shards per partition (wds).")] = 1,
    workers: Annotated[int, typer.Option(help="DataLoader decode workers.")] = 4,
    precision: Annotated[
        str,
        typer.Option(help="fp32, bf16/fp16 (weights cast), amp_bf16/amp_fp16 (autocast), auto."),
    ] = "fp32",
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: auto).")
    ] = None,
    input_format: Annotated[InputFormat, typer.Option(help="Input layout.")] = InputFormat.auto,
    image_root: Annotated[Path | None, typer.Option(help="Root of relative table paths.")] = None,
    image_column: Annotated[str | None, typer.Option(help="Table column of image paths.")] = None,
    caption_column: Annotated[str | None, typer.Option(help="Table column of captions.")] = None,
) -> None:
    """Embed a collection into partitions of normalised float16 vectors plus metadata.

    A rerun skips complete partitions and redoes an interrupted one; under torchrun the ranks
    share the partitions.
    """
    from .search.embed import embed_collection

    summary = embed_collection(
        list(inputs), out, model=model, pretrained=pretrained, batch_size=batch_size,
        partition_size=partition_size, shards_per_partition=shards_per_partition,
        num_workers=workers, precision=precision, device=device,
        input_format=input_format.value, image_root=image_root, image_column=image_column,
        caption_column=caption_column,
    )  # fmt: skip
    console.print(
        f"embedded {summary['images']} images ({summary['captions']} captions) into "
        f"{summary['complete_partitions']} partitions in {summary['seconds']:.1f}s "
        f"({summary['images_per_second']:.1f} images/s); skipped {summary['skipped']}; "
        f"output in {out}"
    )


def index(
    embeddings: Annotated[Path, typer.Argument(help="An embedded collection (from embed).")],
    out: Annotated[Path, typer.Option(help="Output directory of the index.")],
    kind: Annotated[
        IndexKind, typer.Option(help="Index type; auto chooses by size.")
    ] = IndexKind.auto,
    modality: Annotated[
        Modality, typer.Option(help="Index image or caption vectors.")
    ] = Modality.image,
    memory_budget_gb: Annotated[float, typer.Option(help="Memory the index may use.")] = 4.0,
    recall_target: Annotated[float, typer.Option(help="recall@10 to tune for.")] = 0.95,
    latency_budget_ms: Annotated[float, typer.Option(help="Per-query latency budget.")] = 10.0,
    train_size: Annotated[int | None, typer.Option(help="Vectors to train IVF on.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Build a FAISS index over a collection, measure its recall and latency, and tune it."""
    from .search.index import build_index

    info = build_index(
        embeddings, out, kind=kind.value, memory_budget_gb=memory_budget_gb,
        recall_target=recall_target, latency_budget_ms=latency_budget_ms,
        train_size=train_size, seed=seed, modality=modality.value,
    )  # fmt: skip
    recall, latency = info.get("recall_at_10"), info.get("latency_ms_mean")
    measured = (
        f"recall@10 {recall:.3f}, {latency:.3f} ms/query mean"
        if recall is not None and latency is not None
        else "too small to measure recall"
    )
    console.print(f"{info['kind']} index of {info['ntotal']} vectors: {measured}; written to {out}")


def dedup(
    embeddings: Annotated[Path, typer.Argument(help="An embedded collection (from embed).")],
    out: Annotated[Path, typer.Option(help="Groups as .parquet (one row per member) or .json.")],
    threshold: Annotated[float, typer.Option(help="Cosine similarity joining two items.")] = 0.95,
    k: Annotated[
        int | None, typer.Option(help="Use the k nearest neighbours instead of a range search.")
    ] = None,
    index_dir: Annotated[
        Path | None, typer.Option("--index", help="Propose pairs with this built index.")
    ] = None,
    modality: Annotated[Modality, typer.Option(help="Image or caption vectors.")] = Modality.image,
) -> None:
    """Find near-duplicate groups: connected components of pairs above a cosine threshold."""
    from .search.dedup import dedup_collection

    summary = dedup_collection(embeddings, out, threshold, k=k, index_dir=index_dir,
                               modality=modality.value)  # fmt: skip
    console.print(
        f"{summary['groups']} near-duplicate groups among {summary['vectors']} vectors "
        f"({summary['duplicates']} removable copies); written to {out}"
    )


def serve(
    config: Annotated[
        Path | None, typer.Argument(help="Server config (YAML/JSON) naming several indices.")
    ] = None,
    index_dir: Annotated[
        Path | None, typer.Option("--index", help="Serve this one index, without a config.")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    model: Annotated[str | None, typer.Option(help="Override the collection's model.")] = None,
    pretrained: Annotated[
        str | None, typer.Option(help="Override the collection's weights.")
    ] = None,
) -> None:
    """Serve search over HTTP, with the web page at / and the API docs at /docs."""
    from .search.server import serve as serve_config
    from .search.server import serve_index

    if (config is None) == (index_dir is None):
        raise ValueError("give either a CONFIG file or --index DIR (exactly one)")
    console.print(f"serving on http://{host}:{port}/")
    if config is not None:
        serve_config(config, host=host, port=port)
    else:
        serve_index(index_dir, host=host, port=port, model=model, pretrained=pretrained)


def register(app: typer.Typer) -> None:
    """Add the search commands to the ``clipforge`` app."""
    app.command()(embed)
    app.command()(index)
    app.command()(dedup)
    app.command()(serve)
