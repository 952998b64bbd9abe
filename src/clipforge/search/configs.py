"""The configs of ``clipforge embed``, ``index`` and ``dedup``: typed, strict, self-checking.

Each holds exactly the keyword arguments of its library function (``embed_collection``,
``build_index``, ``dedup_collection``) besides the input and output paths, so the command
line (flags generated from the fields), a YAML recipe and the Python API take the same
options and reject the same mistakes, each error naming the option and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..data.plan import INPUT_FORMATS
from ..precision import check_precision
from ..typed_config import TypedConfig, check, option

INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf-flat", "ivf-pq")
MODALITIES: tuple[str, ...] = ("image", "text")


class _SearchConfig(TypedConfig):
    """A search command's config: its input and output ``PATHS``, then keyword options."""

    PATHS: ClassVar[tuple[str, str]]

    def options(self) -> dict[str, Any]:
        """The library function's keyword arguments: every field but ``PATHS``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.PATHS}


@dataclass(frozen=True, kw_only=True)
class EmbedConfig(_SearchConfig):
    """``embed_collection(inputs, out, **options)``: see :mod:`clipforge.search.embed`."""

    PATHS: ClassVar[tuple[str, str]] = ("inputs", "out")

    inputs: tuple[str, ...] = option(help="Image folders, shard paths/brace patterns, or tables.")
    out: str = option(help="Output directory of the embedded collection.")
    model: str = option(help="Model name or config JSON.")
    pretrained: str | None = option(None, help="Weights file or hf-hub:org/name.")
    batch_size: int = option(128, help="Images per forward pass.")
    partition_size: int = option(10_000, help="Samples per partition (folders, tables).")
    shards_per_partition: int = option(1, help="Shards per partition (wds).")
    num_workers: int = option(4, flag="workers", help="DataLoader decode workers.")
    precision: str = option("fp32", help="fp32, bf16, fp16, amp_bf16, amp_fp16 or auto.")
    device: str | None = option(None, help="cpu, cuda, cuda:1 ... (default: auto).")
    input_format: str = option("auto", help="Input layout: auto, folder, wds or table.")
    image_root: str | None = option(None, help="Root of relative table paths.")
    image_column: str | None = option(None, help="Table column of image paths.")
    caption_column: str | None = option(None, help="Table column of captions.")
    progress: bool = option(True, help="Show a progress bar.")

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("inputs is empty: give image folders, shards or tables to embed")
        sizes = ("batch_size", "partition_size", "shards_per_partition")
        check("count", **{name: getattr(self, name) for name in sizes})
        check("index", num_workers=self.num_workers)
        check_precision(self.precision)
        check(INPUT_FORMATS, input_format=self.input_format)


@dataclass(frozen=True, kw_only=True)
class IndexConfig(_SearchConfig):
    """``build_index(embeddings, out, **options)``: see :mod:`clipforge.search.index`."""

    PATHS: ClassVar[tuple[str, str]] = ("embeddings", "out")

    embeddings: str = option(help="An embedded collection (from embed).")
    out: str = option(help="Output directory of the index.")
    kind: str = option("auto", help="Index type: auto (by size), flat, hnsw, ivf-flat, ivf-pq.")
    modality: str = option("image", help="Index image or caption (text) vectors.")
    memory_budget_gb: float = option(4.0, help="Memory the index may use.")
    recall_target: float = option(0.95, help="recall@10 to tune for.")
    latency_budget_ms: float = option(10.0, help="Per-query latency budget.")
    train_size: int | None = option(None, help="Vectors to train IVF on.")
    seed: int = option(0, help="Sampling seed.")
    nlist: int | None = option(None, help="IVF lists (default: 4 sqrt(n)).")
    pq_m: int | None = option(None, help="PQ code bytes per vector (ivf-pq).")
    sharded: bool | None = option(None, help="Build IVF shards per partition and merge them.")
    n_queries: int = option(1000, help="Sampled rows measuring recall against exact search.")

    def __post_init__(self) -> None:
        sizes = {"train_size": self.train_size, "nlist": self.nlist, "pq_m": self.pq_m}
        check_plan_options(self.kind, self.memory_budget_gb, self.latency_budget_ms, **sizes)
        check(MODALITIES, modality=self.modality)
        if not 0 < self.recall_target <= 1:
            raise ValueError(f"recall_target must be in (0, 1], got {self.recall_target}")
        check("count", n_queries=self.n_queries)


@dataclass(frozen=True, kw_only=True)
class DedupConfig(_SearchConfig):
    """``dedup_collection(embeddings, out, **options)``: see :mod:`clipforge.search.dedup`."""

    PATHS: ClassVar[tuple[str, str]] = ("embeddings", "out")

    embeddings: str = option(help="An embedded collection (from embed).")
    out: str = option(help="Groups as .parquet (one row per member) or .json.")
    threshold: float = option(0.95, help="Cosine similarity joining two items.")
    k: int | None = option(None, help="Use the k nearest neighbours instead of a range search.")
    index_dir: str | None = option(None, flag="index", help="Propose pairs with this index.")
    modality: str = option("image", help="Image or caption (text) vectors.")

    def __post_init__(self) -> None:
        check_dedup_options(self.threshold, self.k)
        check(MODALITIES, modality=self.modality)


def check_plan_options(
    kind: str, memory_budget_gb: float, latency_budget_ms: float, **sizes: int | None
) -> None:
    """The checks of :func:`~clipforge.search.index_choice.plan_index`'s options, which an
    :class:`IndexConfig` holds too; ``sizes`` (train_size, nlist, pq_m) may be None (automatic)."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; expected one of {INDEX_KINDS}")
    check("positive", memory_budget_gb=memory_budget_gb, latency_budget_ms=latency_budget_ms)
    check("count_or_none", **sizes)


def check_dedup_options(threshold: float, k: int | None) -> None:
    """The checks of :func:`~clipforge.search.dedup.near_duplicate_groups`'s options, which a
    :class:`DedupConfig` holds too."""
    if not -1 <= threshold <= 1:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    check("count_or_none", k=k)
