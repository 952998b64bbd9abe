"""What every adaptation method shares: input checks, the validation search, the minibatch
loop, freezing the model, accuracy, and the head file format.

Every method fits on frozen features: ``features`` is a float tensor (N, D) and ``labels`` a
long tensor (N,) of class indices in ``[0, C)``. A fitted method is a :class:`FewShotHead`:
``logits(features) -> (N, C)`` plus ``hparams``, a JSON-ready dict of everything chosen or
fixed (the values searched on validation among them) for the results file.

Heads that are saved use one format: a safetensors file whose tensors are the head's
parameters and whose string metadata holds one JSON document under ``"clipforge.adapt"``
(the method name and its settings), so a file is self-describing and loads without pickle.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn

from ..zeroshot.heads import read_document_file, write_document_file

METADATA_KEY = "clipforge.adapt"


class FewShotHead(Protocol):
    """The shape every fitted method has: logits for features, and its recorded settings."""

    hparams: dict[str, Any]

    def logits(self, features: torch.Tensor) -> torch.Tensor: ...


def check_features(features: torch.Tensor, name: str, dim: int | None = None) -> torch.Tensor:
    """Return ``features`` after checking it is a float (N, D) tensor (with ``D == dim``)."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 2 or not features.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor of shape (N, D), "
            f"got {tuple(features.shape)} {features.dtype}"
        )
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"{name} has dimension {features.shape[1]}, expected {dim}")
    if not torch.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return features


def check_splits(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None,
    val_labels: torch.Tensor | None,
    *,
    num_classes: int | None = None,
    dim: int | None = None,
) -> tuple[int, bool]:
    """Check the train split and the optional val split (both halves or neither): features
    (N, D) with ``D == dim`` (val: the train features' D), labels (N,) in ``[0, num_classes)``.

    Returns ``(num_classes, has_val)``: ``num_classes`` if given, else one more than the
    largest train label.
    """
    if (val_features is None) != (val_labels is None):
        raise ValueError("give both val_features and val_labels, or neither")
    splits = [("train", train_features, train_labels)]
    if val_features is not None:
        splits.append(("val", val_features, val_labels))
    for name, features, labels in splits:
        check_features(features, f"{name} features", dim)
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"{name} labels must be a long tensor of shape (N,), got {got}")
        if labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"{name}: {features.shape[0]} feature rows but {labels.shape[0]} labels"
            )
        if labels.numel() == 0:
            raise ValueError(f"{name} split is empty")
        low, high = int(labels.min()), int(labels.max())
        num_classes = high + 1 if num_classes is None else num_classes
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"{name} labels span [{low}, {high}], outside [0, {num_classes}) classes"
            )
        dim = features.shape[1]
    return num_classes, val_features is not None


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of logits (N, C) against labels (N,), in [0, 1]."""
    return float((logits.argmax(dim=-1) == labels).double().mean())


def best_candidate(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, float]:
    """``(index, accuracy)`` of the most accurate of A candidates' logits (A, N, C) on labels
    (N,); ties go to the first candidate, so a grid's order decides them."""
    accuracies = (logits.argmax(dim=-1) == labels).double().mean(dim=-1)  # (A,)
    index = int(accuracies.argmax())
    return index, float(accuracies[index])


def minibatch_epochs(
    optimizer: torch.optim.Optimizer,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    num_samples: int,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
) -> Iterator[list[float]]:
    """Train ``epochs`` passes of shuffled minibatches; yield each epoch's batch losses.

    ``batch_loss(indices)`` is the loss of the samples at ``indices`` (B,). The shuffle comes
    from a CPU generator seeded with ``seed``, so a run repeats; the learning rate follows a
    cosine schedule over all steps.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    steps = epochs * math.ceil(num_samples / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        losses = []
        for batch in torch.randperm(num_samples, generator=generator).split(batch_size):
            loss = batch_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        yield losses


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for every parameter of ``model``; restored on exit."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    model.eval().requires_grad_(False)
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.train(was_training)


def save_head(
    path: str | os.PathLike, method: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``tensors`` and ``{"method": method, **meta}`` to one safetensors file, atomically."""
    write_document_file(path, METADATA_KEY, tensors, {"method": method, **meta})


def load_head(
    path: str | os.PathLike,
    method: str,
    tensor_keys: tuple[str, ...],
    meta_keys: tuple[str, ...] = (),
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_head` for ``method``; every error names the file.

    ``tensor_keys`` and ``meta_keys`` are the entries the caller needs; a file lacking one is
    an error here rather than a ``KeyError`` later.
    """
    tensors, meta = read_document_file(path, METADATA_KEY, f"{method} head")
    if meta.get("method") != method:
        raise ValueError(f"{path} holds a {meta.get('method')!r} head, not {method!r}")
    missing = [key for key in tensor_keys if key not in tensors]
    missing += [f"metadata {key!r}" for key in meta_keys if key not in meta]
    if missing:
        raise ValueError(f"{path}: {method} head file lacks {missing}")
    return tensors, meta
