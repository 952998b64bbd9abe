"""k-shot subsets of a training split, the same for everyone who uses the same seed.

Few-shot numbers are only comparable when the shots are: the draw here depends on nothing but
the labels, ``k`` and the seed. Classes are visited in ascending order and each draws ``k``
distinct indices (returned sorted) from one ``numpy.random.default_rng(seed)`` generator.
A validation subset for hyperparameter search is drawn from the same training split with
``exclude`` set to the shots, so the test split is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def sample_few_shot(
    labels: Sequence[int] | np.ndarray | torch.Tensor,
    k: int,
    seed: int,
    *,
    num_classes: int | None = None,
    classnames: Sequence[str] | None = None,
    exclude: Sequence[int] | np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Indices (C·k,) of ``k`` distinct samples per class, grouped by class in label order.

    ``labels`` are the training split's labels (N,); classes are ``range(num_classes)``
    (default: ``len(classnames)``, else one more than the largest label). Indices in
    ``exclude`` are never drawn. A class with fewer than ``k`` candidates is an error that
    names it; nothing is silently padded or repeated.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    label_array = _as_int_array(labels, "labels")
    if label_array.size == 0:
        raise ValueError("labels is empty: no training samples to draw shots from")
    if num_classes is None:
        num_classes = len(classnames) if classnames is not None else int(label_array.max()) + 1
    if classnames is not None and len(classnames) != num_classes:
        raise ValueError(f"{len(classnames)} classnames for num_classes={num_classes}")
    if label_array.min() < 0 or label_array.max() >= num_classes:
        raise ValueError(
            f"labels span [{label_array.min()}, {label_array.max()}], "
            f"outside [0, {num_classes}) classes"
        )
    available = np.ones(label_array.shape[0], dtype=bool)
    if exclude is not None:
        excluded = _as_int_array(exclude, "exclude")
        if excluded.size and (excluded.min() < 0 or excluded.max() >= label_array.shape[0]):
            raise ValueError(f"exclude holds indices outside [0, {label_array.shape[0]})")
        available[excluded] = False
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        candidates = np.flatnonzero((label_array == c) & available)
        if candidates.size < k:
            name = f"class {c}" + (f" ({classnames[c]!r})" if classnames is not None else "")
            raise ValueError(
                f"{name} has {candidates.size} available training samples, fewer than k={k}"
            )
        chosen.append(np.sort(rng.choice(candidates, size=k, replace=False)))
    return np.concatenate(chosen).astype(np.int64)


def _as_int_array(values: Sequence[int] | np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A 1-D int64 numpy array of ``values``; floats or other shapes are errors naming them."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D sequence of ints, got {array.dtype} {array.shape}")
    return array.astype(np.int64)
