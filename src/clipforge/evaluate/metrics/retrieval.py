"""Image-text retrieval: recall@k as CLIP_benchmark (v1.6) defines it, plus mean/median rank.

Each caption belongs to one image; an image may have several captions (COCO: 5).

- Image retrieval (text query, images ranked): a caption is a hit at k when its own image is
  among the k images most similar to it. ``image_retrieval_recall@k`` is the share of captions
  that are hits.
- Text retrieval (image query, captions ranked): an image is a hit at k when at least one of its
  captions is among the k captions most similar to it. ``text_retrieval_recall@k`` is the share
  of images that are hits.

Both follow from one rank per query: the 1-based rank of its first correct item, ties broken
by index (:func:`~.classification.first_positive_rank`). ``recall@k = mean(rank <= k)``;
mean and median rank summarise the same ranks. Queries are processed ``batch_size`` at a time, so a 25k x 5k similarity matrix is
never held whole when the inputs are embeddings.

Throughout, ``texts_image_index`` (T,) is the int image of each caption (every image needs a
caption), ``scores`` (T, I) the similarity of each caption to each image (CLIP_benchmark's
``texts_emb @ images_emb.T``), ``image_features`` (I, D) and ``text_features`` (T, D).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...typed_config import check
from ._checks import ArrayLike, as_labels, as_scores, as_unit_rows, check_agree
from .classification import first_positive_rank


@dataclass(frozen=True)
class RetrievalRanks:
    """1-based rank of the first correct item for every query of both directions."""

    image_ranks: np.ndarray  # (T,) int64: each caption's rank of its image among all images
    text_ranks: np.ndarray  # (I,) int64: each image's best rank of its captions


def _check_image_index(texts_image_index: ArrayLike, num_images: int) -> torch.Tensor:
    index = as_labels(texts_image_index, "texts_image_index", num_classes=num_images)  # (T,)
    captioned = torch.bincount(index, minlength=num_images) > 0  # (I,)
    if not captioned.all():
        missing = torch.nonzero(~captioned).flatten()[:5].tolist()
        raise ValueError(
            f"texts_image_index gives no caption to {int((~captioned).sum())} of {num_images} "
            f"images (first: {missing}); text retrieval is undefined for them"
        )
    return index


def _captions_of_images(index: torch.Tensor, num_images: int) -> torch.Tensor:
    """(I, P) caption indices of each image, P = most captions of one image; shorter rows
    repeat their last caption (padding that changes neither a maximum nor a minimum)."""
    counts = torch.bincount(index, minlength=num_images)  # (I,)
    grouped = torch.argsort(index, stable=True)  # (T,) captions ordered by image
    starts = torch.cumsum(counts, 0) - counts  # (I,)
    slots = torch.arange(int(counts.max()), device=index.device)  # (P,)
    return grouped[starts[:, None] + torch.minimum(slots[None, :], counts[:, None] - 1)]


def _batched_ranks(
    num_queries: int,
    batch_size: int,
    scores_for: Callable[[slice], torch.Tensor],
    positives: torch.Tensor,
) -> np.ndarray:
    ranks = [
        first_positive_rank(scores_for(rows), positives[rows]).cpu()
        for rows in (slice(s, s + batch_size) for s in range(0, num_queries, batch_size))
    ]
    return torch.cat(ranks).numpy()


def _ranks(
    num_images: int,
    index: torch.Tensor,
    text_to_image: Callable[[slice], torch.Tensor],
    image_to_text: Callable[[slice], torch.Tensor],
    batch_size: int,
) -> RetrievalRanks:
    """Ranks in both directions from two score providers: rows of (T, I) and of (I, T)."""
    image_ranks = _batched_ranks(len(index), batch_size, text_to_image, index[:, None])
    captions = _captions_of_images(index, num_images)  # (I, P)
    text_ranks = _batched_ranks(num_images, batch_size, image_to_text, captions)
    return RetrievalRanks(image_ranks=image_ranks, text_ranks=text_ranks)


def retrieval_ranks(
    scores: ArrayLike, texts_image_index: ArrayLike, *, batch_size: int = 1024
) -> RetrievalRanks:
    """Ranks from a full similarity matrix (T, I)."""
    check("count", batch_size=batch_size)
    values = as_scores(scores, "scores", ndim=2)  # (T, I)
    index = _check_image_index(texts_image_index, values.shape[1])
    check_agree("scores", values, "texts_image_index", index)
    return _ranks(
        values.shape[1],
        index,
        lambda rows: values[rows],
        lambda rows: values[:, rows].T,
        batch_size,
    )


def retrieval_ranks_from_embeddings(
    image_features: ArrayLike,
    text_features: ArrayLike,
    texts_image_index: ArrayLike,
    *,
    batch_size: int = 1024,
) -> RetrievalRanks:
    """Ranks from embeddings, scoring by cosine similarity one batch of queries at a time.

    Features are L2-normalised here and multiplied in float64 on their own device (a GPU if
    they live there); memory is O(batch_size * max(T, I)), and the products' rounding error
    (~1e-16) is far below the resolution of float32 embeddings.
    """
    check("count", batch_size=batch_size)
    images, texts = as_unit_rows(image_features, "image_features", text_features, "text_features")
    index = _check_image_index(texts_image_index, images.shape[0]).to(images.device)
    check_agree("text_features", texts, "texts_image_index", index)
    return _ranks(
        images.shape[0],
        index,
        lambda rows: texts[rows] @ images.T,  # (b, I)
        lambda rows: images[rows] @ texts.T,  # (b, T)
        batch_size,
    )


def retrieval_metrics(ranks: RetrievalRanks, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k for each k and mean/median rank, for both directions.

    Keys: ``image_retrieval_recall@{k}``, ``text_retrieval_recall@{k}`` (CLIP_benchmark's
    names), ``image_retrieval_mean_rank``, ``image_retrieval_median_rank``,
    ``text_retrieval_mean_rank``, ``text_retrieval_median_rank`` (1-based; the median of an
    even count is the mean of the two middle ranks).
    """
    metrics: dict[str, float] = {}
    for k in ks:
        check("count", ks=k)
        metrics[f"image_retrieval_recall@{k}"] = float(np.mean(ranks.image_ranks <= k))
        metrics[f"text_retrieval_recall@{k}"] = float(np.mean(ranks.text_ranks <= k))
    for direction, values in (("image", ranks.image_ranks), ("text", ranks.text_ranks)):
        metrics[f"{direction}_retrieval_mean_rank"] = float(np.mean(values))
        metrics[f"{direction}_retrieval_median_rank"] = float(np.median(values))
    return metrics
