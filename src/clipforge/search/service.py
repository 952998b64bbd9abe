"""The search service behind the HTTP routes: served indices, query encoding, search, dedup.

Kept apart from the FastAPI wiring so it can be used (and tested) without a web stack, and so
the routes stay a thin translation between HTTP and these calls.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from clipforge.encoder import Encoder
from clipforge.search.collection import Collection, ItemNotFound
from clipforge.search.queries import ApiError, Query
from clipforge.search.server_config import IndexSpec, ServerConfig

if TYPE_CHECKING:  # faiss is imported when the first index loads
    from clipforge.search.index import SearchIndex

logger = logging.getLogger(__name__)

# One query model per distinct (model, pretrained, precision), shared by the indices that name it.
EncoderKey = tuple[str, str | None, str]
DEDUP_FETCH_FACTORS = (2, 8)  # candidates fetched per wanted result, tried in turn


@dataclass
class ServedIndex:
    """One named index with the collection its ids point into and the model for its queries."""

    name: str
    index: SearchIndex
    collection: Collection
    encoder: Encoder

    def summary(self) -> dict[str, Any]:
        model, pretrained = self.encoder.spec
        return {
            "name": self.name,
            "size": int(self.index.ntotal),
            "dim": int(self.index.dim),
            "model": model,
            "pretrained": pretrained,
            "precision": self.encoder.precision.name,
            "kind": self.index.info.get("kind"),
            "embeddings": str(self.collection.root),
        }


@dataclass
class SearchService:
    """Answers searches and item look-ups over the indices of one :class:`ServerConfig`."""

    config: ServerConfig
    indices: dict[str, ServedIndex]

    @classmethod
    def from_config(cls, config: ServerConfig) -> SearchService:
        """Load every index, its collection and its model (one model per distinct spec)."""
        encoders: dict[EncoderKey, Encoder] = {}
        served = {
            name: _load_served(name, spec, config.device, encoders)
            for name, spec in config.indices.items()
        }
        return cls(config, served)

    def resolve(self, name: str | None) -> ServedIndex:
        """The index called ``name``; ``None`` is allowed when exactly one is served."""
        known = sorted(self.indices)
        if name is None:
            if len(known) == 1:
                return self.indices[known[0]]
            raise ApiError(422, f"several indices are served; name one of {known} in 'index'",
                           {"field": "index", "known": known})  # fmt: skip
        if name not in self.indices:
            raise ApiError(404, f"unknown index {name!r}; known indices: {known}",
                           {"field": "index", "known": known})  # fmt: skip
        return self.indices[name]

    def search(self, query: Query) -> dict[str, Any]:
        """The response body of ``POST /search`` for a validated query."""
        started = time.perf_counter()
        served = self.resolve(query.index)
        k = self.config.resolved_default_k if query.k is None else query.k
        if not 1 <= k <= self.config.max_k:
            raise ApiError(422, f"k={k} is out of range; k must be in [1, {self.config.max_k}]",
                           {"field": "k", "min": 1, "max": self.config.max_k})  # fmt: skip
        warnings: list[str] = []
        vector = self._vector(served, query, warnings)  # (D,)
        scores, ids, removed = self._ranked(served, vector, k, query.dedup)
        if query.dedup and len(ids) < min(k, served.index.ntotal):
            warnings.append(f"dedup left {len(ids)} results of the {k} asked for")
        items = served.collection.items(ids.tolist())
        # score right after id: a repeated key keeps its first place
        results = [
            {"id": i["id"], "score": float(s), **i} for i, s in zip(items, scores, strict=True)
        ]
        info = {"kind": query.kind, "index": served.name, "k": k, "dedup": query.dedup,
                **query.info}  # fmt: skip
        if query.dedup:
            info["dedup_removed"] = removed
        info["seconds"] = round(time.perf_counter() - started, 6)
        return {"results": results, "query": info, "warnings": warnings}

    def _vector(self, served: ServedIndex, query: Query, warnings: list[str]) -> np.ndarray:
        """The unit query vector (D,) float32 of any query kind."""
        if query.kind == "text":
            limit = self.config.max_text_chars
            if len(query.value) > limit:
                raise ApiError(422, f"text is {len(query.value)} characters; the limit is {limit}",
                               {"field": "text", "limit": limit})  # fmt: skip
            if served.encoder.truncated(query.value):
                context = served.encoder.context_length
                warnings.append(f"the text is longer than the model's context of {context} "
                                "tokens and was truncated")  # fmt: skip
            return served.encoder.texts([query.value])[0].numpy()
        if query.kind == "image":
            return served.encoder.pil_images([query.value])[0].numpy()
        if query.kind == "id":
            try:
                vector = served.collection.vectors(np.array([query.value]))[0]
            except ItemNotFound as err:
                raise ApiError(404, str(err), {"field": "id"}) from None
            if not vector.any():
                raise ApiError(422, f"item {query.value} has no {served.collection.modality} "
                               "vector (no caption) to search with", {"field": "id"})  # fmt: skip
            return vector
        vector = np.asarray(query.value, dtype=np.float32)  # (D,)
        if vector.shape[0] != served.index.dim:
            raise ApiError(
                422,
                f"embedding has dimension {vector.shape[0]} but index {served.name!r} has "
                f"dimension {served.index.dim}",
                {"field": "embedding", "got": int(vector.shape[0]), "expected": served.index.dim},
            )
        return vector / np.linalg.norm(vector)

    def _ranked(
        self, served: ServedIndex, vector: np.ndarray, k: int, dedup: bool
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(scores, ids, removed)`` of the best ``k`` (fewer at the end of the index)."""
        total = int(served.index.ntotal)
        if not dedup:
            return (*_search(served.index, vector, min(k, total)), 0)
        for factor in DEDUP_FETCH_FACTORS:
            fetch = min(total, k * factor)
            scores, ids = _search(served.index, vector, fetch)
            keep = near_duplicate_free(served.collection.vectors(ids), self.config.dedup_threshold)
            if len(keep) >= k or fetch == total:
                break
        keep = keep[:k]
        removed = keep[-1] + 1 - len(keep) if keep else 0  # dropped among those ranked above
        return scores[keep], ids[keep], removed

    def indices_summary(self) -> list[dict[str, Any]]:
        return [self.indices[name].summary() for name in sorted(self.indices)]


def near_duplicate_free(vectors: np.ndarray, threshold: float) -> list[int]:
    """Greedy dedup in rank order: positions of rows (n, D), unit-norm, whose cosine with every
    earlier kept row is below ``threshold``; a later near-duplicate is dropped, never the first."""
    kept: list[int] = []
    for i, row in enumerate(vectors):
        if not kept or float(np.max(vectors[kept] @ row)) < threshold:
            kept.append(i)
    return kept


def _search(index: SearchIndex, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of one query: ``(scores (m,), ids (m,))`` with the -1 padding removed."""
    scores, ids = index.search(vector[None, :].astype(np.float32), k)  # (1, k) each
    valid = ids[0] >= 0
    return scores[0][valid], ids[0][valid]


def _load_served(
    name: str, spec: IndexSpec, device: str, encoders: dict[EncoderKey, Encoder]
) -> ServedIndex:
    from clipforge.search.index import load_index

    where = f"indices.{name}"
    index = load_index(spec.index)
    info = index.info
    emb_dir = spec.embeddings or info.get("embeddings")
    if not emb_dir:
        raise ValueError(f"{where}.embeddings is not set and {spec.index} names no embeddings")
    collection = Collection(emb_dir, info.get("partitions"), info.get("modality", "image"))
    # Ids are global row numbers: the index's rows per partition must be the collection's.
    built = info.get("partition_rows") or []
    if built != collection.partition_rows or collection.dim != index.dim:
        raise ValueError(
            f"{where}: index {spec.index} was built over {sum(built)} rows of dimension "
            f"{index.dim} but collection {collection.root} holds {len(collection)} of dimension "
            f"{collection.dim}; rebuild the index over this collection"
        )
    model_spec = _model_spec(spec, collection.info, where)
    # Queries are encoded as the collection was, so a bf16 collection gets bf16 queries.
    key = (*model_spec, str(collection.info.get("precision", "fp32")))
    if key not in encoders:
        source = (
            "the config" if spec.model or spec.pretrained else f"{collection.root}/embed_info.json"
        )
        try:
            encoders[key] = Encoder.load(*model_spec, precision=key[2], device=device)
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(
                f"{where}: cannot load the query model {model_spec[0]!r} "
                f"(pretrained={model_spec[1]!r}, precision={key[2]!r}, named by {source}): {err}"
            ) from err
        logger.info("loaded query model %s (pretrained=%s) at %s", *key)
    encoder = encoders[key]
    # Queries embedded by another model than the collection's give meaningless rankings with no
    # error at all, so a width or weights mismatch stops the server from starting.
    if encoder.dim != index.dim:
        raise ValueError(f"{where}: model {model_spec[0]!r} embeds to dimension {encoder.dim} "
                         f"but the index has dimension {index.dim}")  # fmt: skip
    recorded = collection.info.get("weights_blake2b")
    if recorded and recorded != encoder.weights_digest:
        raise ValueError(
            f"{where}: the weights of model {model_spec[0]!r} (pretrained={model_spec[1]!r}, "
            f"blake2b {encoder.weights_digest}) are not those that embedded {collection.root} "
            f"(blake2b {recorded}); set model/pretrained to the checkpoint used by the embedding"
        )
    logger.info("serving index %r: %d vectors, dim %d", name, index.ntotal, index.dim)
    return ServedIndex(name, index, collection, encoder)


def _model_spec(spec: IndexSpec, info: dict[str, Any], where: str) -> tuple[str, str | None]:
    """``(model, pretrained)``: the config's when it names a model (both taken together, since
    a model name and another run's checkpoint do not mix), else the collection's, with the
    config's ``pretrained`` replacing the collection's when only that is given."""
    if spec.model is not None:
        return spec.model, spec.pretrained
    model = info.get("model")
    if not model:
        raise ValueError(f"{where}.model is not set and embed_info.json names no model")
    pretrained = spec.pretrained if spec.pretrained is not None else info.get("pretrained")
    return str(model), None if pretrained is None else str(pretrained)
