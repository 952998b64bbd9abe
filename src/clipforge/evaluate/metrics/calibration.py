"""Calibration: does a confidence of 0.8 mean right 80% of the time?

Expected calibration error with equal-width confidence bins (Guo et al., "On Calibration of
Modern Neural Networks", 2017), negative log-likelihood, the per-bin data of a reliability
diagram, and temperature scaling: one scalar T fitted on held-out data that divides the logits,
leaving the argmax (hence accuracy) unchanged while fixing over- or under-confidence.

Throughout, ``logits`` are (N, C) unnormalised log-probabilities (e.g. ``logit_scale * cos``)
and ``labels`` (N,) int true classes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...typed_config import check
from ._checks import ArrayLike, as_logits_and_labels, check_agree

logger = logging.getLogger(__name__)

DEFAULT_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin data of a reliability diagram, each (M,) for M bins; bin m holds confidences in
    (lower[m], upper[m]] (a confidence of exactly 0 falls in the first bin)."""

    lower: np.ndarray  # bin edges: linspace(0, 1, M + 1)[:-1] ...
    upper: np.ndarray  # ... and [1:]
    confidence: np.ndarray  # mean top-1 probability of the bin's samples (NaN if empty)
    accuracy: np.ndarray  # share of them whose argmax is correct (NaN if empty)
    count: np.ndarray  # samples in the bin

    def expected_calibration_error(self) -> float:
        """``sum_m count[m] / N * |accuracy[m] - confidence[m]|`` over non-empty bins."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] * gaps) / np.sum(self.count))


def _inputs(
    logits: ArrayLike, labels: ArrayLike, prefix: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    return as_logits_and_labels(logits, labels, (f"{prefix}logits", f"{prefix}labels"), finite=True)


def reliability_bins(
    logits: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_BINS
) -> ReliabilityBins:
    """Bin samples by top-1 softmax probability into ``n_bins`` (M) equal-width bins (Guo et
    al. use 15)."""
    check("count", n_bins=n_bins)
    scores, targets = _inputs(logits, labels)
    probs = torch.softmax(scores, dim=1)  # (N, C)
    confidence, predicted = probs.max(dim=1)  # (N,), (N,)
    correct = (predicted == targets).numpy()
    confidence = confidence.numpy()
    edges = np.linspace(0.0, 1.0, n_bins + 1)  # (M + 1,)
    # searchsorted(left) - 1 puts a confidence equal to an edge into the bin it closes.
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)  # (N,)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return ReliabilityBins(edges[:-1], edges[1:], mean_confidence, accuracy, count)


def expected_calibration_error(
    logits: ArrayLike, labels: ArrayLike, n_bins: int = DEFAULT_BINS
) -> float:
    """ECE: the count-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    return reliability_bins(logits, labels, n_bins).expected_calibration_error()


def negative_log_likelihood(logits: ArrayLike, labels: ArrayLike) -> float:
    """Mean ``-log softmax(logits)[label]`` in nats, computed in float64."""
    scores, targets = _inputs(logits, labels)
    return float(F.cross_entropy(scores, targets))


def _check_minimum_exists(scores: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise unless the NLL of ``scores / T`` has a minimum at a finite T > 0.

    With beta = 1/T, NLL(beta) is convex with slope ``mean(E_softmax[z] - z_label)``. The slope
    tends to ``mean(max_c z - z_label)`` as beta -> inf and equals ``mean(mean_c z - z_label)`` at
    beta = 0; a minimum at 0 < beta < inf needs the first positive and the second negative.
    """
    true_scores = scores.gather(1, targets[:, None])[:, 0]  # (N,)
    if bool((scores.amax(dim=1) == true_scores).all()):
        raise ValueError(
            "no temperature fits: every sample of logits scores its label highest, so the NLL "
            "keeps falling as T -> 0 (fit on data the model gets wrong sometimes)"
        )
    if float((scores.mean(dim=1) - true_scores).mean()) >= 0:
        raise ValueError(
            "no temperature fits: logits score the labels no higher than the average class, so "
            "the NLL keeps falling as T -> infinity"
        )


def fit_temperature(logits: ArrayLike, labels: ArrayLike, *, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of ``logits / T`` on held-out data.

    L-BFGS with a strong-Wolfe line search on log T (so T stays positive), in float64. The NLL
    is convex in 1/T, so the minimum found is the global one. Raises ``ValueError`` when no
    finite T > 0 minimises it (every sample correct, or logits no better than chance).
    ``max_iter`` bounds the L-BFGS iterations.
    """
    check("count", max_iter=max_iter)
    scores, targets = _inputs(logits, labels)
    _check_minimum_exists(scores, targets)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(scores / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = math.exp(float(log_t.detach()))
    logger.debug("fitted temperature %.6g on %d samples", temperature, len(targets))
    return temperature


@dataclass(frozen=True)
class TemperatureScaling:
    """A fitted temperature and the calibration it buys on the evaluation set."""

    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def temperature_scaling(
    fit_logits: ArrayLike,
    fit_labels: ArrayLike,
    eval_logits: ArrayLike,
    eval_labels: ArrayLike,
    *,
    n_bins: int = DEFAULT_BINS,
) -> TemperatureScaling:
    """Fit T on validation logits (N, C), report ECE (``n_bins``) and NLL on test logits (M, C)
    before and after dividing by T; passing the validation split twice measures in-sample
    calibration."""
    fit_scores, _ = _inputs(fit_logits, fit_labels, "fit_")
    scores, targets = _inputs(eval_logits, eval_labels, "eval_")
    check_agree("fit_logits", fit_scores, "eval_logits", scores, dim=1)
    temperature = fit_temperature(fit_logits, fit_labels)
    scaled = scores / temperature
    return TemperatureScaling(
        temperature=temperature,
        ece_before=expected_calibration_error(scores, targets, n_bins),
        ece_after=expected_calibration_error(scaled, targets, n_bins),
        nll_before=negative_log_likelihood(scores, targets),
        nll_after=negative_log_likelihood(scaled, targets),
    )
