"""Out-of-distribution detection (the MCM score and threshold-free detection metrics) and the
modality gap of an embedding space.

Convention throughout: a higher score means "more in-distribution", and in-distribution
samples are the positives; ``in_scores`` (N,) are theirs, ``out_scores`` (M,) the OOD ones'.
All metrics are exact under ties (no interpolation, no sampling of thresholds) and computed in
float64 / integer arithmetic. Embeddings (``image_features`` (N, D), ``class_text_features``
(C, D), ``text_features`` (M, D)) are L2-normalised here.

- AUROC: P(s_in > s_out) + P(s_in = s_out) / 2, the Mann-Whitney statistic.
- FPR@TPR: the share of OOD samples accepted at the highest threshold t (accept s >= t) that
  still accepts at least ``tpr`` of the in-distribution samples.
- AUPR: average precision, ``sum_t (R_t - R_{t-1}) * P_t`` over distinct score thresholds t
  taken in decreasing order (tied scores enter together, as in sklearn's
  ``average_precision_score``). AUPR-In ranks in-distribution as positive by the score; AUPR-Out
  ranks OOD as positive by the negated score.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from ...typed_config import check
from ._checks import ArrayLike, as_scores, as_unit_rows


def mcm_score(
    image_features: ArrayLike, class_text_features: ArrayLike, *, temperature: float = 1.0
) -> np.ndarray:
    """Maximum Concept Matching (Ming et al., 2022): ``max_c softmax(cos(x, t_c) / tau)``, one
    text embedding per in-distribution class; (N,) float64 scores in [1/C, 1].

    With tau = 1 (the paper's choice) the softmax over cosines in [-1, 1] stays far from one-hot,
    which is what separates in-distribution images (one class clearly closest) from OOD ones.
    """
    check("positive", temperature=temperature)
    images, texts = as_unit_rows(
        image_features, "image_features", class_text_features, "class_text_features"
    )
    cosine = images @ texts.T  # (N, C)
    return torch.softmax(cosine / temperature, dim=1).amax(dim=1).cpu().numpy()


def _scores(in_scores: ArrayLike, out_scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return (
        as_scores(in_scores, "in_scores", ndim=1).numpy(),
        as_scores(out_scores, "out_scores", ndim=1).numpy(),
    )


def auroc(in_scores: ArrayLike, out_scores: ArrayLike) -> float:
    """Area under the ROC curve, in-distribution as positives; ties count one half."""
    positive, negative = _scores(in_scores, out_scores)
    negative = np.sort(negative)
    below = np.searchsorted(negative, positive, side="left")  # (N,) OOD scored lower
    not_above = np.searchsorted(negative, positive, side="right")  # (N,) lower or equal
    # 2U is an integer sum, so the statistic is exact before the one final division.
    twice_u = int(np.sum(below, dtype=np.int64) + np.sum(not_above, dtype=np.int64))
    return twice_u / (2 * len(positive) * len(negative))


def fpr_at_tpr(in_scores: ArrayLike, out_scores: ArrayLike, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold whose true-positive rate is >= ``tpr``.

    Accepting ``s >= t``, the threshold is the k-th largest in-distribution score with
    ``k = ceil(tpr * N)``; the result is the share of OOD scores ``>= t``. ``tpr`` lies in
    (0, 1].
    """
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1], got {tpr!r}")
    positive, negative = _scores(in_scores, out_scores)
    # Rounding tpr * N first keeps e.g. 0.95 * 20 = 18.999... from becoming 19 -> k = 19 wrong.
    k = max(1, math.ceil(round(tpr * len(positive), 9)))
    threshold = np.sort(positive)[::-1][k - 1]
    return float(np.mean(negative >= threshold))


def _average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of a ranking by decreasing score with tied scores grouped into one threshold."""
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_relevant = scores[order], relevant[order]
    true_pos = np.cumsum(ranked_relevant)  # (N,)
    # The last position of each run of equal scores closes one threshold.
    closes = np.flatnonzero(np.r_[ranked_scores[1:] != ranked_scores[:-1], True])
    hits = true_pos[closes]  # (G,)
    precision = hits / (closes + 1)
    recall_gain = np.diff(np.r_[0, hits]) / true_pos[-1]
    return float(np.sum(recall_gain * precision))


def aupr(
    in_scores: ArrayLike, out_scores: ArrayLike, *, positive: Literal["in", "out"] = "in"
) -> float:
    """Area under the precision-recall curve as average precision: AUPR-In for ``positive``
    ``"in"`` (in-distribution positive, ranked by score), AUPR-Out for ``"out"`` (OOD
    positive, ranked by the negated score)."""
    if positive not in ("in", "out"):
        raise ValueError(f"positive must be 'in' or 'out', got {positive!r}")
    scores_in, scores_out = _scores(in_scores, out_scores)
    scores = np.concatenate([scores_in, scores_out])
    is_in = np.r_[np.ones(len(scores_in), bool), np.zeros(len(scores_out), bool)]
    if positive == "in":
        return _average_precision(scores, is_in)
    return _average_precision(-scores, ~is_in)


def ood_metrics(
    in_scores: ArrayLike, out_scores: ArrayLike, *, tpr: float = 0.95
) -> dict[str, float]:
    """``auroc``, ``fpr@{tpr*100}tpr`` (e.g. ``fpr@95tpr``), ``aupr_in`` and ``aupr_out``."""
    return {
        "auroc": auroc(in_scores, out_scores),
        f"fpr@{tpr * 100:g}tpr": fpr_at_tpr(in_scores, out_scores, tpr),
        "aupr_in": aupr(in_scores, out_scores, positive="in"),
        "aupr_out": aupr(in_scores, out_scores, positive="out"),
    }


def modality_gap(image_features: ArrayLike, text_features: ArrayLike) -> float:
    """``|| mean(normalised images) - mean(normalised texts) ||_2`` (Liang et al., 2022).

    CLIP's two towers map into separate cones of the sphere; this distance between the two
    centroids measures how far apart they sit (0 = same centroid, at most 2). N and M may differ.
    """
    images, texts = as_unit_rows(image_features, "image_features", text_features, "text_features")
    return float(torch.linalg.vector_norm(images.mean(dim=0) - texts.mean(dim=0)))
