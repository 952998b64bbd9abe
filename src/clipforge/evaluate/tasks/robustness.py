"""Calibration, out-of-distribution detection and the modality gap of the zero-shot head.

* Calibration of the softmax over ``logit_scale * cosine`` (the model's own temperature): ECE
  with 15 equal-width bins and NLL on the test split, then again after temperature scaling
  with T fitted on the val split; the reliability-diagram bins before and after.
  When no finite T exists (the val split is classified perfectly, or at chance),
  ``temperature_scaling`` records why instead of numbers and the run goes on.
* OOD detection (with ``ood_dataset``): the MCM score (max softmax of cosines at tau = 1)
  of the test images (positives) against the OOD set's images: AUROC, FPR@95%TPR, AUPR.
* Modality gap: distance between the centroids of the normalised test-image embeddings and
  of the class embeddings of their labels (each image paired with its class's text).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..config import EvalConfig
from ..features import CachedEncoder
from ..heads import zero_shot_head
from ..metrics import (
    classification_metrics,
    mcm_score,
    modality_gap,
    negative_log_likelihood,
    ood_metrics,
    reliability_bins,
    temperature_scaling,
)
from ..metrics.calibration import DEFAULT_BINS
from ..splits import open_role, open_roles
from .common import LABEL_TASKS, TaskOutput


def run_robustness(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Metrics keys: ``acc1``, ``ece``, ``nll``, ``temperature_scaling`` (T, ECE and NLL
    after, or ``error``), ``modality_gap`` and, with an OOD set, ``ood`` (MCM metrics)."""
    roles = open_roles(config, encoder, LABEL_TASKS)
    head = zero_shot_head(config, encoder, roles["test"].dataset)
    test = encoder.images(roles["test"].dataset, roles["test"].describe())
    val = encoder.images(roles["val"].dataset, roles["val"].describe())
    scale = float(encoder.encoder.model.logit_scale.detach().float().exp())
    logits = scale * head.logits(test.features)  # (N, C)
    val_logits = scale * head.logits(val.features)  # (M, C)
    bins = reliability_bins(logits, test.labels)  # DEFAULT_BINS
    metrics: dict[str, Any] = {
        "acc1": classification_metrics(logits, test.labels, ks=(1,))["acc1"],
        "ece": bins.expected_calibration_error(),
        "nll": negative_log_likelihood(logits, test.labels),
    }
    details: dict[str, Any] = {
        "logit_scale": scale,
        "bins": DEFAULT_BINS,
        "head": head.provenance,
        "reliability": asdict(bins),
    }
    try:
        fitted = temperature_scaling(val_logits, val.labels, logits, test.labels)
    except ValueError as err:
        metrics["temperature_scaling"] = {"error": str(err)}
    else:
        metrics["temperature_scaling"] = fitted.as_dict()
        scaled = logits / fitted.temperature
        details["reliability_scaled"] = asdict(reliability_bins(scaled, test.labels))
    metrics["modality_gap"] = modality_gap(test.features, head.weights[test.labels])
    data = {"test": test.summary(), "val": val.summary()}
    if config.robustness.ood_dataset is not None:
        ood_set = open_role(config.robustness.ood_dataset, None, encoder)
        ood = encoder.images(ood_set.dataset, ood_set.describe())
        in_scores = mcm_score(test.features, head.weights)
        out_scores = mcm_score(ood.features, head.weights)
        metrics["ood"] = ood_metrics(in_scores, out_scores)
        details["ood_dataset"] = config.robustness.ood_dataset
        data["ood"] = ood.summary()
    return TaskOutput(metrics, details, data)
