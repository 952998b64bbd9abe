"""What every task returns, the classification metrics they share, and the label space of
the classes a train split holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..metrics import classification_metrics, mean_average_precision

LABEL_TASKS = ("classification",)  # tasks that fit on labels take single-label sets only
# A confusion matrix goes into the result only while a reader can still read it as a plot; a
# 1000-class one would be a million numbers in every result file.
CONFUSION_MAX_CLASSES = 32


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


def confusion(
    logits: torch.Tensor, labels: torch.Tensor, classnames: Sequence[str]
) -> dict[str, Any] | None:
    """``{"classnames", "matrix"}`` where ``matrix[true][predicted]`` counts test images (top-1
    of logits (N, C) against labels (N,)); None for multi-label sets and for more than
    :data:`CONFUSION_MAX_CLASSES` classes."""
    if labels.ndim != 1 or len(classnames) > CONFUSION_MAX_CLASSES:
        return None
    size = len(classnames)
    cells = labels.long() * size + logits.argmax(-1)  # (N,) true * C + predicted
    matrix = torch.bincount(cells, minlength=size * size).view(size, size)
    return {"classnames": list(classnames), "matrix": matrix.tolist()}


class LabelSpace:
    """The classes with training samples, and maps between full and compact class ids.

    Heads are fitted in the compact space: a class without samples has no mean (GDA), no
    shots, and an unpenalised bias that a logistic regression would drive to -inf without
    converging. Expanded back, such a class scores ``-inf``: it is never predicted.
    """

    def __init__(self, train_labels: torch.Tensor, classnames: list[str]) -> None:
        if train_labels.ndim != 1:
            raise ValueError("fitting on labels needs a single-label train split")
        self.num_classes = len(classnames)
        self.classes = torch.unique(train_labels)  # (K,) sorted full ids with samples
        self.names = [classnames[int(c)] for c in self.classes]
        self._compact = torch.full((self.num_classes,), -1, dtype=torch.long)
        self._compact[self.classes] = torch.arange(len(self.classes))
        self.missing = [name for name in classnames if name not in set(self.names)]

    def compact(self, labels: torch.Tensor) -> torch.Tensor:
        """Full ids (N,) to compact ids; -1 for a class without samples."""
        return self._compact[labels]

    def expand(self, logits: torch.Tensor) -> torch.Tensor:
        """Compact logits (N, K) to full (N, C), ``-inf`` for classes without samples."""
        full = logits.new_full((logits.shape[0], self.num_classes), float("-inf"))
        full[:, self.classes] = logits
        return full

    def describe_missing(self) -> dict[str, Any]:
        """For the result's details: how many classes had no training sample, and some names."""
        return {"count": len(self.missing), "examples": self.missing[:10]}

    def val_subset(
        self, features: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Val features and compact labels of the samples whose class has training samples."""
        compact = self.compact(labels)
        keep = compact >= 0
        if not keep.any():
            raise ValueError("no val sample belongs to a class with training samples")
        return features[keep], compact[keep]
