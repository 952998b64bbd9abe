"""Image-text retrieval: recall@1/5/10 and mean/median rank in both directions, plus a few
caption queries with their top images, so a report can show what the numbers look like."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..config import EvalConfig
from ..features import CachedEncoder
from ..metrics import retrieval_metrics, retrieval_ranks_from_embeddings
from ..splits import open_roles
from .common import TaskOutput

KS = (1, 5, 10)
EXAMPLE_QUERIES = 6  # captions spread evenly over the set
EXAMPLE_TOP = 5  # images shown per caption


def run_retrieval(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Rank every readable image against every caption of those images (skipped images and
    their captions drop out together, so no caption is left without its image)."""
    test = open_roles(config, encoder, ("retrieval",))["test"]
    encoded = encoder.images(test.dataset, test.describe())
    captions = [test.dataset.captions[int(i)] for i in encoded.indices]
    texts = [text for image_captions in captions for text in image_captions]
    owner = torch.repeat_interleave(torch.tensor([len(c) for c in captions]))  # (T,)
    text_features = encoder.texts(texts)  # (T, D)
    ranks = retrieval_ranks_from_embeddings(encoded.features, text_features, owner)
    details = {"images": len(captions), "captions": len(texts), "ks": list(KS)}
    details["examples"] = _examples(texts, text_features, encoded.features, encoded.indices)
    return TaskOutput(retrieval_metrics(ranks, KS), details, {"test": encoded.summary()})


def _examples(
    texts: list[str],
    text_features: torch.Tensor,
    image_features: torch.Tensor,
    indices: torch.Tensor,
) -> list[dict[str, Any]]:
    """For :data:`EXAMPLE_QUERIES` captions, ``{"caption", "top"}``: the set indices of the
    images ranked first by cosine similarity, best first."""
    queries = list(range(0, len(texts), max(1, len(texts) // EXAMPLE_QUERIES)))[:EXAMPLE_QUERIES]
    chosen = F.normalize(text_features[queries], dim=-1)  # (Q, D)
    similarity = chosen @ F.normalize(image_features, dim=-1).T  # (Q, N)
    top = similarity.topk(min(EXAMPLE_TOP, similarity.shape[1]), dim=-1).indices  # (Q, k)
    return [
        {"caption": texts[query], "top": indices[row].tolist()}
        for query, row in zip(queries, top, strict=True)
    ]
