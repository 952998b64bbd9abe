"""One optimiser step: ``train_step(model, loss_fn, micro_batches, optimizer, ...) -> metrics``.

With several micro-batches the step keeps every negative of the whole batch, as OpenCLIP's
``accum_freq`` does: features of all micro-batches are first computed without gradient and
cached; then each micro-batch is recomputed with gradient and its rows replace the cached ones
in the full-batch loss. The summed gradients equal those of one big batch, at the memory cost
of one micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..losses import clamp_logit_scale_

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[..., torch.Tensor]


@dataclass
class StepContext:
    """What a step needs besides model, data and optimiser; fixed for a run."""

    autocast: Callable[[], contextlib.AbstractContextManager]
    grad_clip: float = 0.0
    scaler: torch.amp.GradScaler | None = None
    teacher: nn.Module | None = None


def _features(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    pixels, tokens = batch
    return model(pixels, tokens)


def _loss(
    loss_fn: LossFn, out: dict, image: torch.Tensor, text: torch.Tensor, teacher: dict | None
):
    extra = {}
    if teacher is not None:
        extra = {
            "teacher_image_features": teacher["image_features"],
            "teacher_text_features": teacher["text_features"],
            "teacher_logit_scale": teacher["logit_scale"],
        }
    return loss_fn(image, text, out["logit_scale"], out.get("logit_bias"), **extra)


def _backward(loss: torch.Tensor, ctx: StepContext) -> None:
    (ctx.scaler.scale(loss) if ctx.scaler is not None else loss).backward()


def _no_sync(model: nn.Module, last: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-batch."""
    if not last and hasattr(model, "no_sync"):
        return model.no_sync()
    return contextlib.nullcontext()


def train_step(
    model: nn.Module,
    loss_fn: LossFn,
    micro_batches: Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    ctx: StepContext,
) -> dict[str, float]:
    """Forward, backward and update on one batch (split into ``micro_batches``)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    teacher = None
    if ctx.teacher is not None:
        with torch.no_grad(), ctx.autocast():
            teacher_outs = [_features(ctx.teacher, b) for b in micro_batches]
        teacher = {
            k: torch.cat([o[k] for o in teacher_outs]) for k in ("image_features", "text_features")
        }
        teacher["logit_scale"] = teacher_outs[0]["logit_scale"]

    if len(micro_batches) == 1:
        with ctx.autocast():
            out = _features(model, micro_batches[0])
            loss = _loss(loss_fn, out, out["image_features"], out["text_features"], teacher)
        _backward(loss, ctx)
    else:
        with torch.no_grad(), ctx.autocast():
            cached = [_features(model, b) for b in micro_batches]
        for j, batch in enumerate(micro_batches):
            last = j == len(micro_batches) - 1
            with _no_sync(model, last=last), ctx.autocast():
                out = _features(model, batch)
                if not last:  # every pass sees the whole loss: let one carry the scale's gradient
                    out = {k: v.detach() if k.startswith("logit_") else v for k, v in out.items()}
                image = torch.cat([out["image_features"] if i == j else c["image_features"]
                                   for i, c in enumerate(cached)])  # fmt: skip
                text = torch.cat([out["text_features"] if i == j else c["text_features"]
                                  for i, c in enumerate(cached)])  # fmt: skip
                loss = _loss(loss_fn, out, image, text, teacher)
                _backward(loss, ctx)

    if ctx.scaler is not None:
        ctx.scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, ctx.grad_clip or float("inf"))
    if ctx.scaler is not None:
        ctx.scaler.step(optimizer)
        ctx.scaler.update()
    else:
        optimizer.step()
    raw = model.module if hasattr(model, "module") else model
    clamp_logit_scale_(raw.logit_scale)
    return {
        "loss": float(loss.detach()),
        "logit_scale": float(raw.logit_scale.detach().exp()),
        "grad_norm": float(grad_norm),
    }
