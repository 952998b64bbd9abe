"""Zero-shot classification: the head's cosine logits against the labels (and, for a few
classes, their confusion matrix in the details).

On a caption-selection set (``shapes/word-order``) the "classes" are each image's own candidate
captions, the correct one first: an image counts as right when its correct caption scores
strictly higher than every other candidate (a tie is wrong, not a coin flip).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import EvalConfig
from ..features import CachedEncoder
from ..heads import zero_shot_head
from ..splits import RoleSet, open_roles
from .common import TaskOutput, confusion, label_metrics

SETS = ("classification", "multilabel", "caption_selection")


def run_zeroshot(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Metrics of the zero-shot head on the test split (see :mod:`.common` for the keys)."""
    test = open_roles(config, encoder, SETS)["test"]
    if test.dataset.task == "caption_selection":
        return _caption_selection(config, encoder, test)
    head = zero_shot_head(config, encoder, test.dataset)
    encoded = encoder.images(test.dataset, test.describe())
    logits = head.logits(encoded.features)  # (N, C)
    metrics = label_metrics(logits, encoded.labels)
    details = {"num_classes": head.num_classes, "head": head.provenance}
    matrix = confusion(logits, encoded.labels, head.classnames)
    if matrix is not None:
        details["confusion"] = matrix
    return TaskOutput(metrics, details, {"test": encoded.summary()})


def _caption_selection(config: EvalConfig, encoder: CachedEncoder, test: RoleSet) -> TaskOutput:
    encoded = encoder.images(test.dataset, test.describe())
    candidates = [test.dataset.captions[int(i)] for i in encoded.indices]
    texts = F.normalize(encoder.texts([c for cs in candidates for c in cs]), dim=-1)  # (T, D)
    images = F.normalize(encoded.features, dim=-1)  # (N, D)
    right = torch.zeros(len(candidates), dtype=torch.bool)
    start = 0
    for row, options in enumerate(candidates):
        scores = texts[start : start + len(options)] @ images[row]  # (K,)
        right[row] = bool(scores[0] > scores[1:].max())
        start += len(options)
    metrics = {"accuracy": float(right.double().mean())}
    kinds = getattr(test.dataset, "kinds", None)
    if kinds is not None:
        kind_of = [kinds[int(i)] for i in encoded.indices]
        for kind in sorted(set(kind_of)):
            mask = torch.tensor([k == kind for k in kind_of])
            metrics[f"accuracy_{kind}"] = float(right[mask].double().mean())
    details = {"candidates_per_image": sorted({len(c) for c in candidates})}
    return TaskOutput(metrics, details, {"test": encoded.summary()})
