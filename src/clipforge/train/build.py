"""What a run trains with, built from its config: where it runs, the model, the state, the step.

Each piece is built once per process, in :func:`clipforge.train.fit` or, for callers that bring
their own batches, in :func:`clipforge.train.train`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from functools import partial

import torch
from torch import nn

from ..distributed import DistInfo
from ..losses import SIGLIP_INIT_LOGIT_BIAS, SIGLIP_INIT_LOGIT_SCALE, create_loss
from ..models import CLIP, create_model
from ..precision import TRAIN_PRECISIONS, Precision, resolve_precision
from .config import TrainConfig
from .optim import create_optimizer, lr_at
from .state import TrainState
from .step import StepContext

# DDP's switch for broadcasting buffers each forward; newer torch renames it (and warns).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def build_model(cfg: TrainConfig, device: torch.device) -> CLIP:
    """The model with the run's options applied (precision stays fp32: autocast does the rest)."""
    m = cfg.model
    model = create_model(m.name, m.pretrained, device=device, patch_dropout=m.patch_dropout)
    if m.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if m.lock_image:
        model.lock_image_tower(unlocked_groups=m.lock_image_unlocked_groups)
    if m.lock_text:
        model.lock_text_tower(unlocked_layers=m.lock_text_unlocked_layers)
    model = model.to(memory_format=_memory_format(model))
    if m.init_temperature and m.pretrained is None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1 / m.init_temperature))
    if cfg.loss.name == "siglip" and model.logit_bias is None:
        # SigLIP learns a bias too; start where the paper does (t = 10, b = -10). The config
        # records it, so that the saved checkpoints load with create_model.
        model.config = dataclasses.replace(model.config, init_logit_bias=SIGLIP_INIT_LOGIT_BIAS)
        model.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_LOGIT_BIAS, device=device))
        if m.pretrained is None:
            with torch.no_grad():
                model.logit_scale.fill_(SIGLIP_INIT_LOGIT_SCALE)
    return model


def _memory_format(model: CLIP) -> torch.memory_format:
    """Channels-last for convolutional towers, whose kernels run faster in it on CPU and GPU
    (``docs/benchmarks.md``); transformers gain nothing from it."""
    return torch.channels_last if model.config.vision_cfg.is_resnet else torch.contiguous_format


def new_state(cfg: TrainConfig, model: CLIP, precision: Precision) -> TrainState:
    """Step 0 of a run: a fresh optimiser and, when ``precision`` needs one, a loss scaler on
    its device (a CUDA scaler in a CPU run would be silently disabled)."""
    scaler = torch.amp.GradScaler(precision.device_type) if precision.loss_scaled else None
    return TrainState(model, create_optimizer(model, cfg.optim), scaler)


def step_context(cfg: TrainConfig, model: CLIP, dist: DistInfo) -> StepContext:
    """The fixed part of every step: loss, precision, schedule, teacher and the wrapper that
    runs the forward pass (DDP across ranks, ``torch.compile``)."""
    wrapped: nn.Module = model
    if dist.world_size > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        # BatchNorm running statistics stay per rank (rank 0's are saved): they never enter a
        # training step, so broadcasting them each forward would cost time for nothing.
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids, **_NO_BUFFER_SYNC)
    if cfg.model.compile:
        wrapped = torch.compile(wrapped)
    return StepContext(
        loss_fn=create_loss(cfg.loss.name, **cfg.loss.options()),
        precision=resolve_precision(
            cfg.run.precision, dist.device, option="run.precision", allowed=TRAIN_PRECISIONS
        ),
        lr_at=partial(lr_at, cfg=cfg.optim, total_steps=cfg.run.steps),
        accum_steps=cfg.optim.accum_steps,
        grad_clip=cfg.optim.grad_clip,
        device=dist.device,
        memory_format=_memory_format(model),
        teacher=_teacher(cfg, dist.device),
        wrapped=wrapped if wrapped is not model else None,
    )


def _teacher(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    if cfg.loss.name != "distill":
        return None
    teacher = create_model(cfg.loss.teacher, cfg.loss.teacher_pretrained or None, device=device)
    return teacher.eval().requires_grad_(False)
