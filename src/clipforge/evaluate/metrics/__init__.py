"""Evaluation metrics: CLIP_benchmark's classification and retrieval metrics, reproduced
exactly, plus calibration, OOD detection and the modality gap. All functions are pure, accept
numpy arrays, torch tensors or sequences, and raise ``ValueError`` naming a bad argument (and
both shapes on a mismatch)."""

from .calibration import (
    ReliabilityBins,
    TemperatureScaling,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    temperature_scaling,
)
from .classification import (
    average_precision_per_class,
    classification_metrics,
    mean_average_precision,
    mean_per_class_recall,
    target_ranks,
    topk_accuracy,
)
from .ood import aupr, auroc, fpr_at_tpr, mcm_score, modality_gap, ood_metrics
from .retrieval import (
    RetrievalRanks,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_ranks_from_embeddings,
)

__all__ = [
    "ReliabilityBins",
    "RetrievalRanks",
    "TemperatureScaling",
    "aupr",
    "auroc",
    "average_precision_per_class",
    "classification_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "fpr_at_tpr",
    "mcm_score",
    "mean_average_precision",
    "mean_per_class_recall",
    "modality_gap",
    "negative_log_likelihood",
    "ood_metrics",
    "reliability_bins",
    "retrieval_metrics",
    "retrieval_ranks",
    "retrieval_ranks_from_embeddings",
    "target_ranks",
    "temperature_scaling",
    "topk_accuracy",
]
