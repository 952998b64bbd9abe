"""What every adaptation method shares: input checks, accuracy, and the head file format.

Every method fits on frozen features: ``features`` is a float tensor (N, D) and ``labels`` a
long tensor (N,) of class indices in ``[0, C)``. A fitted method is a :class:`FewShotHead`:
``logits(features) -> (N, C)`` plus ``hparams``, a JSON-ready dict of everything chosen or
fixed (the values searched on validation among them) for the results file.

Heads that are saved use one format: a safetensors file whose tensors are the head's
parameters and whose string metadata holds one JSON document under ``"clipforge.adapt"``
(the method name and its settings), so a file is self-describing and loads without pickle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path

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


def check_split(
    features: torch.Tensor,
    labels: torch.Tensor,
    name: str,
    *,
    num_classes: int | None = None,
    dim: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a (features (N, D), labels (N,)) pair; labels must lie in ``[0, num_classes)``."""
    check_features(features, f"{name} features", dim)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{name} labels must be a long tensor of shape (N,), got {shape}")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"{name}: {features.shape[0]} feature rows but {labels.shape[0]} labels")
    if labels.numel() == 0:
        raise ValueError(f"{name} split is empty")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        raise ValueError(f"{name} labels span [{low}, {high}], outside [0, {num_classes}) classes")
    return features, labels


def check_val_pair(val_features: torch.Tensor | None, val_labels: torch.Tensor | None) -> bool:
    """True when a validation split is given; an error when only half of it is."""
    if (val_features is None) != (val_labels is None):
        raise ValueError("give both val_features and val_labels, or neither")
    return val_features is not None


def num_classes_of(labels: torch.Tensor, num_classes: int | None) -> int:
    """``num_classes`` if given, else one more than the largest label."""
    return int(labels.max()) + 1 if num_classes is None else num_classes


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of logits (N, C) against labels (N,), in [0, 1]."""
    return float((logits.argmax(dim=-1) == labels).double().mean())


def save_head(
    path: str | os.PathLike, method: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write ``tensors`` and ``{"method": method, **meta}`` to one safetensors file, atomically."""
    header = json.dumps({"method": method, **meta})
    contiguous = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(contiguous, str(tmp), metadata={METADATA_KEY: header})


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {method} head file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[METADATA_KEY])
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a clipforge {method} head file ({err!r})") from err
    if meta.get("method") != method:
        raise ValueError(f"{path} holds a {meta.get('method')!r} head, not {method!r}")
    missing = [key for key in tensor_keys if key not in tensors]
    missing += [f"metadata {key!r}" for key in meta_keys if key not in meta]
    if missing:
        raise ValueError(f"{path}: {method} head file lacks {missing}")
    return tensors, meta
