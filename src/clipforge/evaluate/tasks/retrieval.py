"""Image-text retrieval: recall@1/5/10 and mean/median rank in both directions."""

from __future__ import annotations

import torch

from ..config import EvalConfig
from ..features import CachedEncoder
from ..inputs import encode_role, open_roles
from ..metrics import retrieval_metrics, retrieval_ranks_from_embeddings
from .common import TaskOutput

KS = (1, 5, 10)


def run_retrieval(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Rank every readable image against every caption of those images (skipped images and
    their captions drop out together, so no caption is left without its image)."""
    test = open_roles(config, encoder, ("test",), ("retrieval",))["test"]
    encoded = encode_role(encoder, test)
    captions = [test.dataset.captions[int(i)] for i in encoded.indices]
    texts = [text for image_captions in captions for text in image_captions]
    owner = torch.repeat_interleave(torch.tensor([len(c) for c in captions]))  # (T,)
    text_features = encoder.texts(texts)  # (T, D)
    ranks = retrieval_ranks_from_embeddings(encoded.features, text_features, owner)
    details = {"images": len(captions), "captions": len(texts), "ks": list(KS)}
    return TaskOutput(retrieval_metrics(ranks, KS), details, {"test": encoded.summary()})
