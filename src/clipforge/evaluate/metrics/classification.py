"""Classification metrics as CLIP_benchmark (v1.6) reports them.

Single-label: ``acc1``, ``acc5`` (top-k hit rate) and ``mean_per_class_recall`` (sklearn's
``balanced_accuracy_score`` of the argmax prediction: the recall of each class that occurs in
the targets, averaged with equal weight). Multi-label: ``mean_average_precision``.

Two deliberate departures, both where the reference is undefined or unhelpful:
- Top-k with fewer than k classes uses k = C (the reference reports NaN for acc5 when C < 5).
- Ties in scores are broken by class index (:func:`first_positive_rank`); the reference's
  order is whatever ``torch.topk``/``torch.sort`` return.

Throughout, single-label ``logits`` are (N, C) class scores (logits, cosine similarities or
probabilities) and ``targets`` (N,) int true classes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ...typed_config import check
from ._checks import (
    ArrayLike,
    as_binary,
    as_logits_and_labels,
    as_scores,
    check_agree,
)

logger = logging.getLogger(__name__)


def first_positive_rank(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """1-based rank of the first correct candidate of each query, under the stable order: the
    one ranking rule every rank-based metric here uses.

    References rank with ``torch.topk``/``torch.sort``, whose order among tied scores is
    unspecified, so a tie can flip a hit into a miss from one machine to the next. We fix the
    order: decreasing score, ties broken by increasing column index (a *stable* descending
    sort). Top-k accuracy, recall@k and mean/median rank all follow from this rank, so they
    always agree.

    ``scores`` (Q, N) rank N candidates for Q queries, highest first; ``positives`` (Q, P) int64
    are each query's correct columns (a row with fewer repeats one as padding). Returns (Q,)
    int64 ranks in ``[1, N]``: ``rank <= k`` is exactly "a positive is in the top k". No sort, and no (Q, N) mask of positives: the first positive is the one of highest score
    (lowest index among equals); its rank counts the candidates scored strictly higher, plus
    the equal-scored ones at a lower index. That last count needs a second look only in the
    rare rows that hold a tie with the best positive.
    """
    positive_scores = scores.gather(1, positives)  # (Q, P)
    best = positive_scores.amax(dim=1, keepdim=True)  # (Q, 1)
    no_positive = torch.iinfo(torch.int64).max
    first = torch.where(positive_scores == best, positives, no_positive).amin(dim=1)  # (Q,)
    ranks = 1 + (scores > best).sum(dim=1)  # (Q,)
    tied = torch.nonzero((scores == best).sum(dim=1) > 1).flatten()  # rows with a tie at best
    if tied.numel():
        columns = torch.arange(scores.shape[1], device=scores.device)  # (N,)
        before = (scores[tied] == best[tied]) & (columns < first[tied, None])  # (R, N)
        ranks[tied] += before.sum(dim=1)
    return ranks


def _balanced_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    predicted = scores.argmax(dim=1)  # (N,), first maximum on ties
    present = torch.unique(labels)  # (P,)
    hits = torch.zeros(scores.shape[1], dtype=torch.float64).index_add_(
        0, labels, (predicted == labels).double()
    )  # (C,)
    counts = torch.bincount(labels, minlength=scores.shape[1]).double()  # (C,)
    return float((hits[present] / counts[present]).mean())


def target_ranks(logits: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """1-based rank (N,) int64 of the true class among the C classes, per sample; 1 means
    the true class has the highest score (ties: lower index first)."""
    scores, labels = as_logits_and_labels(logits, targets, ("logits", "targets"))
    return first_positive_rank(scores, labels[:, None]).numpy()


def topk_accuracy(logits: ArrayLike, targets: ArrayLike, k: int = 1) -> float:
    """Share of samples whose true class is among the k highest-scored classes (k >= 1; with
    fewer than k classes, k = C: every sample is a hit, never NaN)."""
    check("count", k=k)
    return float(np.mean(target_ranks(logits, targets) <= k))


def mean_per_class_recall(logits: ArrayLike, targets: ArrayLike) -> float:
    """Balanced accuracy of the argmax prediction, as ``sklearn.balanced_accuracy_score``.

    The recall (share predicted correctly) of each class present in ``targets``, averaged with
    equal weight, so rare classes count as much as common ones. Classes absent from ``targets``
    are left out of the mean, as sklearn does. The argmax takes the lowest index on ties.
    """
    return _balanced_accuracy(*as_logits_and_labels(logits, targets, ("logits", "targets")))


def average_precision_per_class(scores: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Average precision of each class of a multi-label problem, as CLIP_benchmark computes it.

    For class c, samples are ranked by decreasing ``scores[:, c]`` (ties: lower sample index
    first); AP is the mean, over the positives, of the precision at each positive's rank. A
    class with no positive gets AP = 0 (the reference divides by ``max(#positives, 1)``), and
    that 0 stays in the mean of ``mean_average_precision``. ``scores`` (N, C), ``targets``
    (N, C) 0/1 (or bool); returns (C,) float64.
    """
    values = as_scores(scores, "scores", ndim=2)  # (N, C)
    truth = as_binary(targets, "targets", ndim=2)  # (N, C)
    check_agree("scores", values, "targets", truth, dim=None)
    order = torch.sort(values, dim=0, descending=True, stable=True).indices  # (N, C)
    ranked_truth = torch.gather(truth, 0, order).double()  # (N, C)
    ranks = torch.arange(1, values.shape[0] + 1, dtype=torch.float64)[:, None]  # (N, 1)
    precision = ranked_truth.cumsum(dim=0) / ranks  # (N, C)
    positives = ranked_truth.sum(dim=0)  # (C,)
    empty = int((positives == 0).sum())
    if empty:
        logger.warning(
            "%d of %d classes have no positive; their AP counts as 0", empty, len(positives)
        )
    return ((precision * ranked_truth).sum(dim=0) / positives.clamp(min=1)).numpy()


def mean_average_precision(scores: ArrayLike, targets: ArrayLike) -> float:
    """Mean over all C classes of ``average_precision_per_class`` (CLIP_benchmark's mAP)."""
    return float(np.mean(average_precision_per_class(scores, targets)))


def classification_metrics(
    logits: ArrayLike, targets: ArrayLike, *, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """CLIP_benchmark's single-label report: ``acc{k}`` for each k of ``ks``,
    ``mean_per_class_recall``."""
    for k in ks:
        check("count", ks=k)
    scores, labels = as_logits_and_labels(logits, targets, ("logits", "targets"))
    ranks = first_positive_rank(scores, labels[:, None])  # (N,)
    metrics = {f"acc{k}": float((ranks <= k).double().mean()) for k in ks}
    metrics["mean_per_class_recall"] = _balanced_accuracy(scores, labels)
    return metrics
