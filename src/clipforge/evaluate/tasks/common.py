"""What every task returns, and the classification metrics they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..metrics import classification_metrics, mean_average_precision

LABEL_TASKS = ("classification",)  # tasks that fit on labels take single-label sets only


@dataclass
class TaskOutput:
    """A task's answer: ``metrics`` (numbers, possibly nested by method and shots),
    ``details`` (what was chosen or built: hyperparameters, head provenance, bins) and
    ``data`` (per role: samples read, skipped, encoding time)."""

    metrics: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


def label_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """CLIP_benchmark's report for logits (N, C): ``acc1``, ``acc5``, ``mean_per_class_recall``
    for labels (N,); ``mean_average_precision`` for multi-hot labels (N, C)."""
    if labels.ndim == 2:
        return {"mean_average_precision": mean_average_precision(logits, labels.round().long())}
    return classification_metrics(logits, labels, ks=(1, 5))
