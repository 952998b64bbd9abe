"""WiSE-FT (Wortsman et al., CVPR 2022): interpolate zero-shot and fine-tuned weights.

``θ(alpha) = (1 - alpha) · θ_zs + alpha · θ_ft`` for every floating-point entry of the two
state dicts. The formula is evaluated as written, so ``alpha = 0`` and ``alpha = 1`` give the
endpoints bit for bit. Entries that are not floating point (BatchNorm's integer
``num_batches_tracked`` counter, boolean masks) cannot be averaged: they are copied from the
nearer endpoint (the zero-shot state for ``alpha < 0.5``, else the fine-tuned one), which
keeps the endpoints exact; a difference between the two states is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import torch

log = logging.getLogger(__name__)

StateDict = Mapping[str, torch.Tensor]
DEFAULT_ALPHAS = tuple(i / 10 for i in range(11))


def interpolate_weights(
    zero_shot_state: StateDict, finetuned_state: StateDict, alpha: float
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) θ_zs + alpha θ_ft`` key by key; keys, shapes and dtypes must match."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    only_zs = sorted(set(zero_shot_state) - set(finetuned_state))
    only_ft = sorted(set(finetuned_state) - set(zero_shot_state))
    if only_zs or only_ft:
        raise ValueError(
            f"state dicts differ in keys: only in zero-shot {only_zs[:5]}, "
            f"only in fine-tuned {only_ft[:5]}"
        )
    merged = {}
    for key, zs in zero_shot_state.items():
        ft = finetuned_state[key]
        if zs.shape != ft.shape or zs.dtype != ft.dtype:
            raise ValueError(
                f"state dict entry {key!r}: zero-shot {tuple(zs.shape)} {zs.dtype} vs "
                f"fine-tuned {tuple(ft.shape)} {ft.dtype}"
            )
        if zs.is_floating_point() or zs.is_complex():
            merged[key] = (1 - alpha) * zs + alpha * ft
        else:
            if not torch.equal(zs, ft):
                log.info("%s: non-float entry differs; taking the nearer endpoint's", key)
            merged[key] = (ft if alpha >= 0.5 else zs).clone()
    return merged


def evaluate_path(
    zero_shot_state: StateDict,
    finetuned_state: StateDict,
    eval_fn: Callable[[dict[str, torch.Tensor]], Mapping[str, float]],
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> list[dict[str, float]]:
    """``[{"alpha": a, **eval_fn(θ(a))}, ...]`` along the interpolation path.

    ``eval_fn`` receives the interpolated state dict (e.g. loads it into a model and returns
    ``{"top1": ...}`` on a validation split); its metrics are recorded per alpha, ready for a
    results JSON.
    """
    path = []
    for alpha in alphas:
        metrics = eval_fn(interpolate_weights(zero_shot_state, finetuned_state, alpha))
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"eval_fn must return a mapping of metric names to values, "
                f"got {type(metrics).__name__} at alpha={alpha}"
            )
        path.append({"alpha": float(alpha), **{k: float(v) for k, v in metrics.items()}})
        log.info("wise-ft alpha=%g: %s", alpha, metrics)
    return path
