"""``clipforge embed``, ``index``, ``dedup`` and ``serve``: thin wrappers over ``clipforge.search``.

Each command loads its typed config (:mod:`.cli_config`) and calls one library function, whose
input errors name the input and are printed as one line by ``clipforge.cli.main``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .cli_config import config_command
from .search.configs import DedupConfig, EmbedConfig, IndexConfig

console = Console()


def _embed(config: EmbedConfig) -> None:
    from .search.embed import embed_collection

    summary = embed_collection(list(config.inputs), config.out, **config.options())
    console.print(
        f"embedded {summary['images']} images ({summary['captions']} captions) into "
        f"{summary['complete_partitions']} partitions in {summary['seconds']:.1f}s "
        f"({summary['images_per_second']:.1f} images/s); skipped {summary['skipped']}; "
        f"output in {config.out}"
    )


def _index(config: IndexConfig) -> None:
    from .search.index import build_index

    info = build_index(config.embeddings, config.out, **config.options())
    recall, latency = info.get("recall_at_10"), info.get("latency_ms_mean")
    measured = (
        f"recall@10 {recall:.3f}, {latency:.3f} ms/query mean"
        if recall is not None and latency is not None
        else "too small to measure recall"
    )
    console.print(
        f"{info['kind']} index of {info['ntotal']} vectors: {measured}; written to {config.out}"
    )


def _dedup(config: DedupConfig) -> None:
    from .search.dedup import dedup_collection

    summary = dedup_collection(config.embeddings, config.out, **config.options())
    console.print(
        f"{summary['groups']} near-duplicate groups among {summary['vectors']} vectors "
        f"({summary['duplicates']} removable copies); written to {config.out}"
    )


embed = config_command(
    EmbedConfig, _embed, arguments=("inputs",),
    doc="""Embed a collection into partitions of normalised float16 vectors plus metadata.

    A rerun skips complete partitions and redoes an interrupted one; under torchrun the ranks
    share the partitions.

    Example: clipforge embed photos/ --out emb --model ViT-B-32 --pretrained openai
    """,
)  # fmt: skip
index = config_command(
    IndexConfig, _index, arguments=("embeddings",),
    doc="""Build a FAISS index over a collection, measure its recall and latency, and tune it.

    Example: clipforge index emb --out idx --kind auto
    """,
)  # fmt: skip
dedup = config_command(
    DedupConfig, _dedup, arguments=("embeddings",),
    doc="""Find near-duplicate groups: connected components of pairs above a cosine threshold.

    Example: clipforge dedup emb --out groups.parquet --threshold 0.95
    """,
)  # fmt: skip


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
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a setting, e.g. max_k=100.")
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the effective config as YAML and exit.")
    ] = False,
) -> None:
    """Serve search over HTTP, with the web page at / and the API docs at /docs.

    Example: clipforge serve --index idx --model ViT-B-32 --pretrained openai --port 8000
    """
    from .search.server import serve as serve_config
    from .search.server import single_index_config
    from .search.server_config import load_server_config

    if (config is None) == (index_dir is None):
        raise ValueError("give either a CONFIG file or --index DIR (exactly one)")
    source = config or single_index_config(index_dir, model=model, pretrained=pretrained)
    settings = load_server_config(source).with_overrides(set_ or [])
    if print_config:
        typer.echo(settings.to_yaml().rstrip("\n"))
        return
    console.print(f"serving on http://{host}:{port}/")
    serve_config(settings, host=host, port=port)


def register(app: typer.Typer) -> None:
    """Add the search commands to the ``clipforge`` app."""
    app.command("embed")(embed)
    app.command("index")(index)
    app.command("dedup")(dedup)
    app.command()(serve)
