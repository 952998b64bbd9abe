"""Near-duplicate groups: connected components of the graph joining pairs with cosine >= threshold.

Edges come from a range search (every neighbour at or above the threshold; the default) or, with
``k``, from a k-NN search (the ``k`` nearest, kept when at or above the threshold: bounded work
when groups are huge, but a group of more than ``k + 1`` near-copies may then split in two).
Without an index an exact flat index is built over the vectors (in memory, ``n * D * 4`` bytes);
with one (say the collection's IVF-PQ index) the pairs it proposes are re-scored exactly from
the stored vectors, so an approximate index may miss a pair but never invents one. Components
are found with union-find, so a chain a~b~c is one group even when a and c are further apart.

Singletons are omitted: the result lists the groups of two or more ids, each sorted ascending,
ordered by their smallest id. Downstream (``curate``) keeps the smallest id of each group.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from clipforge.atomic import write_json_atomic
from clipforge.data.tables import write_table
from clipforge.search.collection import Collection
from clipforge.search.configs import DedupConfig, check_dedup_options
from clipforge.search.index import SearchIndex, fill_index, load_index
from clipforge.search.vectors import VectorSource

log = logging.getLogger(__name__)

BATCH_ROWS = 1024  # query rows per search; bounds the memory of one batch's range results
OUTPUT_SUFFIXES = (".parquet", ".json")


def near_duplicate_groups(
    embeddings: str | os.PathLike | np.ndarray | VectorSource,
    threshold: float,
    *,
    k: int | None = None,
    index: SearchIndex | None = None,
    modality: str = "image",
) -> list[list[int]]:
    """Groups of ids (global row ids, or row numbers of an array) with cosine >= ``threshold``.

    ``embeddings`` is a collection directory (its ``modality`` vectors), an (n, D) array of unit
    vectors, or a :class:`VectorSource`. ``k=None`` finds edges by range search, an int by k-NN
    search; ``index`` (built over the same vectors) replaces the exact in-memory flat index.
    """
    check_dedup_options(threshold, k)
    source = embeddings
    if isinstance(embeddings, np.ndarray):
        source = VectorSource.from_array(embeddings)
    elif not isinstance(embeddings, VectorSource):
        source = VectorSource.from_collection(embeddings, modality)
    searcher = index
    if searcher is None:  # an exact inner-product index over every vector, ids as the source's
        searcher = SearchIndex(
            fill_index(faiss.IndexIDMap(faiss.IndexFlatIP(source.dim)), source), {}
        )
    if (searcher.dim, searcher.ntotal) != (source.dim, source.ntotal):
        raise ValueError(
            f"the index holds {searcher.ntotal} vectors of dimension {searcher.dim} but the "
            f"embeddings have {source.ntotal} of dimension {source.dim}; build it over them"
        )
    forest = _UnionFind()
    for ids, x in source.chunks(BATCH_ROWS):
        rows, others = _candidate_pairs(searcher, ids, x, threshold, k)
        if index is not None:  # approximate scores: confirm each pair from the stored vectors
            exact = np.einsum("ij,ij->i", x[rows], source.take(others))  # (pairs,)
            rows, others = rows[exact >= threshold], others[exact >= threshold]
        forest.union_all(ids[rows].tolist(), others.tolist())
    groups = forest.groups()
    members = sum(map(len, groups))
    log.info("%d near-duplicate groups (%d ids) at cosine >= %s", len(groups), members, threshold)
    return groups


def dedup_collection(
    emb_dir: str | os.PathLike, out_path: str | os.PathLike, threshold: float = 0.95, **options: Any
) -> dict[str, Any]:
    """Find a collection's near-duplicate groups and write them to ``out_path``; return a summary.

    ``threshold`` and ``options`` (``k``, ``index_dir``, ``modality``) are the fields of
    :class:`~clipforge.search.configs.DedupConfig`, which checks them. ``out_path`` ends in
    ``.parquet`` (one row per member: group, id, key, keep) or ``.json`` (the summary plus
    ``groups``: ``[{"ids": [...], "keys": [...]}]``). ``keep`` marks the smallest id of each
    group, the copy to keep. ``index_dir`` uses a built index (see
    :func:`near_duplicate_groups`); ``key`` comes from the collection's metadata.
    """
    config = DedupConfig(embeddings=str(emb_dir), out=str(out_path), threshold=threshold, **options)
    k, index_dir, modality = config.k, config.index_dir, config.modality
    out = Path(out_path)
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"{out}: output must end in one of {OUTPUT_SUFFIXES}")
    collection = Collection(emb_dir, modality=modality)
    source = collection.source
    index = load_index(index_dir) if index_dir is not None else None
    if index is not None and index.info.get("modality", "image") != modality:
        raise ValueError(
            f"{index_dir} indexes {index.info.get('modality')} vectors, not {modality}"
        )
    groups = near_duplicate_groups(source, threshold, k=k, index=index)
    members = [i for g in groups for i in g]
    keys = {i: row["key"] for i, row in zip(members, collection.rows(members), strict=True)}
    summary = {
        "embeddings": str(Path(emb_dir).resolve()),
        "modality": modality,
        "threshold": threshold,
        "k": k,
        "index": str(Path(index_dir).resolve()) if index_dir is not None else None,
        "vectors": source.ntotal,
        "groups": len(groups),
        "duplicates": sum(len(g) - 1 for g in groups),  # ids that keep-first would remove
    }
    if out.suffix == ".json":
        listed = [{"ids": g, "keys": [keys[i] for i in g]} for g in groups]
        write_json_atomic(out, {**summary, "groups": listed, "group_count": len(groups)})
    else:
        rows = [
            {"group": n, "id": i, "key": keys[i], "keep": j == 0}
            for n, group in enumerate(groups)
            for j, i in enumerate(group)
        ]
        write_table(out, rows, {"group": "int64", "id": "int64", "key": "string", "keep": "bool"})
    return summary


class _UnionFind:
    """Disjoint sets over the ids that appear in an edge; the smallest id is each set's root."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        parent = self.parent
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]  # path halving
            a = parent[a]
        return a

    def union_all(self, left: list[int], right: list[int]) -> None:
        for a, b in zip(left, right, strict=True):
            ra, rb = self.find(a), self.find(b)
            if ra != rb:
                self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        members: dict[int, list[int]] = defaultdict(list)
        for node in self.parent:
            members[self.find(node)].append(node)
        return sorted(sorted(g) for g in members.values())


def _candidate_pairs(
    searcher: SearchIndex, ids: np.ndarray, x: np.ndarray, threshold: float, k: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(rows of x, neighbour ids)`` of the pairs scoring >= threshold, self pairs excluded."""
    if k is None:
        lims, _, others = searcher.range_search(x, threshold)
        rows = np.repeat(np.arange(len(x)), np.diff(lims))
    else:
        scores, neighbours = searcher.search(x, min(k + 1, searcher.ntotal))  # +1: the query itself
        rows = np.repeat(np.arange(len(x)), neighbours.shape[1])
        keep = scores.ravel() >= threshold
        rows, others = rows[keep], neighbours.ravel()[keep]
    pair = (others >= 0) & (others != ids[rows])
    return rows[pair], others[pair]
