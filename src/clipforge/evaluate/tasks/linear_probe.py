"""Linear probe: logistic regression on frozen features of the train split, its
regularisation chosen on the val split (then refitted on train + val), scored on test.

The probe is fitted over the classes that occur in the train split (see
:class:`~.common.LabelSpace`); a class without training samples scores ``-inf`` on test and
is listed in ``details["classes_without_training_samples"]``.
"""

from __future__ import annotations

from typing import Any

from ...adapt import fit_linear_probe
from ..config import EvalConfig
from ..features import CachedEncoder
from .common import TaskOutput, fit_splits, label_metrics, summaries


def run_linear_probe(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Test metrics of the probe; ``details["hparams"]`` holds the chosen lambda and sweep."""
    _, encoded, space = fit_splits(config, encoder)
    train, test = encoded["train"], encoded["test"]
    val_features, val_labels = space.val_subset(encoded["val"].features, encoded["val"].labels)
    probe = fit_linear_probe(
        train.features,
        space.compact(train.labels),
        val_features,
        val_labels,
        num_classes=len(space.classes),
    )
    logits = space.expand(probe.logits(test.features))
    details: dict[str, Any] = {"num_classes": space.num_classes, "hparams": probe.hparams}
    details["val_samples_used"] = len(val_labels)
    if space.missing:
        details["classes_without_training_samples"] = space.describe_missing()
    return TaskOutput(label_metrics(logits, test.labels), details, summaries(encoded))
