"""Embedding-space diagnostics."""

from __future__ import annotations

import torch

from ._checks import ArrayLike, as_unit_rows


def modality_gap(image_features: ArrayLike, text_features: ArrayLike) -> float:
    """``|| mean(normalised images) - mean(normalised texts) ||_2`` (Liang et al., 2022).

    CLIP's two towers map into separate cones of the sphere; this distance between the two
    centroids measures how far apart they sit (0 = same centroid, at most 2).

    Args:
        image_features: (N, D) image embeddings. text_features: (M, D) text embeddings; N and M
            may differ. Rows are L2-normalised here.
    """
    images, texts = as_unit_rows(image_features, "image_features", text_features, "text_features")
    return float(torch.linalg.vector_norm(images.mean(dim=0) - texts.mean(dim=0)))
