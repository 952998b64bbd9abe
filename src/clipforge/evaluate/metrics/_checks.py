"""Input checks shared by the metrics: convert array-likes and name the argument in every error.

Every metric accepts numpy arrays, torch tensors (any device) or nested sequences. Scores are
promoted to float64, which is exact for float16/float32/bfloat16 inputs, so comparisons and
ranks never change on conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _to_tensor(value: ArrayLike, name: str, ndim: int) -> torch.Tensor:
    """``value`` as a tensor (on its device) of ``ndim`` dimensions, not empty."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} is not a numeric array ({err})") from err
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)})")
    return tensor


def as_scores(
    value: ArrayLike, name: str, *, ndim: int, finite: bool = False, keep_device: bool = False
) -> torch.Tensor:
    """``value`` as a float64 tensor of ``ndim`` dimensions, non-empty and free of NaN.

    ``finite`` also rejects infinities (softmax-based metrics need that; ranks do not).
    The result is on the CPU unless ``keep_device``: only embedding inputs, whose products are
    the expensive part, are worth computing on an accelerator.
    """
    tensor = _to_tensor(value, name, ndim)
    if not keep_device:
        tensor = tensor.cpu()
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.float64)
    if torch.isnan(tensor).any():
        raise ValueError(f"{name} contains NaN")
    if finite and not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains infinite values")
    return tensor


def as_labels(value: ArrayLike, name: str, *, num_classes: int) -> torch.Tensor:
    """``value`` as an int64 CPU tensor (N,) of class indices in ``[0, num_classes)``."""
    tensor = _to_tensor(value, name, 1).cpu()
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{name} must hold integer class indices, got dtype {tensor.dtype}")
    tensor = tensor.to(torch.int64)
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}), got values from {low} to {high}")
    return tensor


def as_binary(value: ArrayLike, name: str, *, ndim: int) -> torch.Tensor:
    """``value`` as a bool CPU tensor; only 0/1 (or False/True) entries are accepted."""
    tensor = _to_tensor(value, name, ndim).cpu()
    if tensor.is_complex():
        raise ValueError(f"{name} must hold 0/1 values, got dtype {tensor.dtype}")
    binary = tensor != 0
    if not torch.equal(binary.to(tensor.dtype), tensor):
        raise ValueError(f"{name} must hold only 0 and 1, got other values")
    return binary


# What a dimension of a (rows, columns) input is, for messages.
_SIZE_OF = {0: "number of rows", 1: "number of columns", None: "shape"}


def check_agree(
    name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor, dim: int | None = 0
) -> None:
    """Raise unless ``a`` and ``b`` have the same size along ``dim``: 0 the samples, 1 the
    features or classes, None the whole shape."""
    sizes = (a.shape, b.shape) if dim is None else (a.shape[dim], b.shape[dim])
    if sizes[0] != sizes[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same {_SIZE_OF[dim]}, got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def as_logits_and_labels(
    logits: ArrayLike, labels: ArrayLike, names: tuple[str, str], *, finite: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 scores (N, C) and int64 classes (N,) in ``[0, C)``, named ``names`` in errors."""
    scores = as_scores(logits, names[0], ndim=2, finite=finite)  # (N, C)
    targets = as_labels(labels, names[1], num_classes=scores.shape[1])  # (N,)
    check_agree(names[0], scores, names[1], targets)
    return scores, targets


def as_unit_rows(
    a: ArrayLike, name_a: str, b: ArrayLike, name_b: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two embedding matrices (N, D) and (M, D) as float64 rows of unit L2 norm, both on the
    device of ``a``: their products are the expensive part, worth an accelerator."""
    first = as_scores(a, name_a, ndim=2, finite=True, keep_device=True)
    second = as_scores(b, name_b, ndim=2, finite=True, keep_device=True)
    check_agree(name_a, first, name_b, second, dim=1)
    return _l2_normalize(first, name_a), _l2_normalize(second, name_b).to(first.device)


def _l2_normalize(features: torch.Tensor, name: str) -> torch.Tensor:
    """Rows of a (N, D) float tensor scaled to unit L2 norm; a zero row has no direction."""
    norms = torch.linalg.vector_norm(features, dim=1, keepdim=True)  # (N, 1)
    zero = torch.nonzero(norms[:, 0] == 0).flatten()
    if zero.numel():
        raise ValueError(f"{name} has rows of zero norm (rows {zero[:5].tolist()})")
    return features / norms
