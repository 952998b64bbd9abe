"""The optimiser and the learning-rate schedule.

Weight decay is applied to matrices only: biases, norms, embeddings and the temperature/bias of
the loss are excluded, as in CLIP and OpenCLIP (decaying them hurts and has no regularising use).
The schedule is a pure function of the step, so resuming needs no scheduler state to be exact.

The update runs fused (one kernel per parameter) where torch has it for the parameters' device
and dtypes. On CPU torch otherwise falls back to a Python loop over parameters, several times
slower (``docs/benchmarks.md``, "The optimiser").
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from .config import OptimSection

log = logging.getLogger(__name__)

_NO_DECAY_NAMES = ("logit_scale", "logit_bias", "positional_embedding", "class_embedding")


def wants_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Matrices and conv kernels decay; vectors (biases, norms), embeddings and scalars do not."""
    if param.ndim < 2 or name.endswith(_NO_DECAY_NAMES):
        return False
    return not ("token_embedding" in name or name.endswith("embedding.weight"))


def create_optimizer(model: nn.Module, cfg: OptimSection) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if wants_weight_decay(name, param) else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    options = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if cfg.fused and _fused_supported(decay + no_decay):
        try:
            return torch.optim.AdamW(groups, fused=True, **options)
        except RuntimeError as error:  # a torch build without the fused kernel for this device
            log.info("fused AdamW unavailable (%s); using the unfused update", error)
    return torch.optim.AdamW(groups, **options)


def _fused_supported(params: list[nn.Parameter]) -> bool:
    """Torch's fused AdamW takes dense floating-point tensors on CPU or CUDA."""
    return bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() and not p.is_sparse
        for p in params
    )


def lr_at(step: int, cfg: OptimSection, total_steps: int) -> float:
    """Learning rate for optimiser step ``step`` (0-based): linear warmup, then cosine or constant."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    decay_steps = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
