"""One optimiser step: ``train_step(state, batch, ctx) -> metrics``.

The step owns everything that happens to one batch: the schedule's learning rate for
``state.step``, the move to the device (channels-last for convolutional towers), the split
into ``accum_steps`` micro-batches, forward and backward under the run's precision, the
(loss-scaled) update. The loop around it only feeds batches and records what it returns.

With several micro-batches the step keeps every negative of the whole batch, as OpenCLIP's
``accum_freq`` does: features of all micro-batches are first computed without gradient and
cached; then each micro-batch is recomputed with gradient and its rows replace the cached ones
in the full-batch loss. The summed gradients equal those of one big batch, at the memory cost
of one micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ..losses import LossFn, clamp_logit_scale_
from ..precision import Precision, resolve_precision
from .optim import set_lr
from .state import TrainState

Batch = tuple[torch.Tensor, torch.Tensor]
_FEATURES = ("image_features", "text_features")


@dataclass(frozen=True)
class StepContext:
    """What a step needs besides the state and the batch; fixed for a run.

    ``lr_at`` maps a step to its learning rate (None keeps the optimiser's); ``wrapped`` is
    what runs the forward pass when it is not ``state.model`` itself (DDP, ``torch.compile``).
    """

    loss_fn: LossFn
    precision: Precision = field(default_factory=lambda: resolve_precision("fp32"))
    lr_at: Callable[[int], float] | None = None
    accum_steps: int = 1
    grad_clip: float = 0.0
    device: torch.device = torch.device("cpu")
    memory_format: torch.memory_format = torch.contiguous_format
    teacher: nn.Module | None = None
    wrapped: nn.Module | None = None


def train_step(state: TrainState, batch: Batch, ctx: StepContext) -> dict[str, float]:
    """Train on ``batch`` (pixels (B, 3, H, W), tokens (B, L)) and advance ``state.step``."""
    if ctx.lr_at is not None:
        set_lr(state.optimizer, ctx.lr_at(state.step))
    pixels, tokens = batch
    pixels = pixels.to(ctx.device, memory_format=ctx.memory_format)
    micro = list(zip(pixels.chunk(ctx.accum_steps),
                     tokens.to(ctx.device).chunk(ctx.accum_steps), strict=True))  # fmt: skip
    model = ctx.wrapped if ctx.wrapped is not None else state.model
    model.train()
    state.optimizer.zero_grad(set_to_none=True)
    loss = _forward_backward(model, micro, ctx, state.scaler)
    grad_norm = _update(state, ctx.grad_clip)
    state.step += 1
    return {
        "loss": float(loss.detach()),
        "logit_scale": float(state.model.logit_scale.detach().exp()),
        "grad_norm": float(grad_norm),
        "lr": state.optimizer.param_groups[0]["lr"],
    }


def _forward_backward(
    model: nn.Module,
    micro_batches: Sequence[Batch],
    ctx: StepContext,
    scaler: torch.amp.GradScaler | None,
) -> torch.Tensor:
    """Accumulate the gradient of the whole batch's loss; return that loss."""
    teacher = _teacher_features(ctx, micro_batches) if ctx.teacher is not None else {}
    cached = None
    if len(micro_batches) > 1:
        with torch.no_grad(), ctx.precision.autocast():
            cached = [model(*b) for b in micro_batches]
    for j, batch in enumerate(micro_batches):
        last = j == len(micro_batches) - 1
        # DDP all-reduces the gradients once, after the last micro-batch.
        sync = last or not hasattr(model, "no_sync")
        with contextlib.nullcontext() if sync else model.no_sync():
            with ctx.precision.autocast():
                out = model(*batch)
                if not last:  # every pass sees the whole loss: let one carry the scale's gradient
                    out = {k: v.detach() if k.startswith("logit_") else v for k, v in out.items()}
                image, text = (_whole_batch(out, cached, j, key) for key in _FEATURES)
                loss = ctx.loss_fn(
                    image, text, out["logit_scale"], out.get("logit_bias"), **teacher
                )
            (scaler.scale(loss) if scaler is not None else loss).backward()
    return loss


def _whole_batch(out: dict, cached: list[dict] | None, j: int, key: str) -> torch.Tensor:
    """``key`` features of the whole batch: micro-batch ``j``'s with gradient, the rest cached."""
    if cached is None:
        return out[key]
    return torch.cat([out[key] if i == j else c[key] for i, c in enumerate(cached)])


def _teacher_features(ctx: StepContext, micro_batches: Sequence[Batch]) -> dict:
    """The frozen teacher's features of the whole batch, as the distillation loss takes them."""
    with torch.no_grad(), ctx.precision.autocast():
        outs = [ctx.teacher(*b) for b in micro_batches]
    return {
        **{f"teacher_{key}": torch.cat([o[key] for o in outs]) for key in _FEATURES},
        "teacher_logit_scale": outs[0]["logit_scale"],
    }


def _update(state: TrainState, grad_clip: float) -> torch.Tensor:
    """Clip, step (through the loss scaler, which skips steps whose gradients overflowed) and
    keep the temperature in range; return the gradient norm before clipping."""
    optimizer, scaler = state.optimizer, state.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip or float("inf"))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    clamp_logit_scale_(state.model.logit_scale)
    return grad_norm
