"""Linear probe: logistic regression on frozen features of the train split, its
regularisation chosen on the val split (then refitted on train + val), scored on test."""

from __future__ import annotations

from ...adapt import fit_linear_probe
from ..config import EvalConfig
from ..features import Encoder
from ..inputs import encode_role, open_roles
from .common import LABEL_TASKS, TaskOutput, label_metrics


def run_linear_probe(config: EvalConfig, encoder: Encoder) -> TaskOutput:
    """Test metrics of the probe; ``details["hparams"]`` holds the chosen lambda and sweep."""
    roles = open_roles(config, encoder, ("test", "train", "val"), LABEL_TASKS)
    encoded = {role: encode_role(encoder, item) for role, item in roles.items()}
    num_classes = len(roles["test"].dataset.classnames)
    probe = fit_linear_probe(
        encoded["train"].features,
        encoded["train"].labels,
        encoded["val"].features,
        encoded["val"].labels,
        num_classes=num_classes,
    )
    metrics = label_metrics(probe.logits(encoded["test"].features), encoded["test"].labels)
    details = {"num_classes": num_classes, "hparams": probe.hparams}
    return TaskOutput(metrics, details, {role: e.summary() for role, e in encoded.items()})
