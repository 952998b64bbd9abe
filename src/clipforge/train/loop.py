"""The training loop: it orchestrates data, schedule, logging, checkpoints and evaluation around
:func:`train_step`, which does the actual work."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from ..distributed import init_distributed, resolve_device
from ..losses import SIGLIP_INIT_LOGIT_BIAS, SIGLIP_INIT_LOGIT_SCALE, create_loss
from ..models import CLIP, create_model
from .batches import StepBatches
from .config import TrainConfig
from .optim import create_optimizer, lr_at, set_lr
from .progress import TrainProgress
from .state import load_checkpoint, resolve_resume, save_checkpoint
from .step import StepContext, train_step

log = logging.getLogger(__name__)
EvalFn = Callable[[CLIP], dict[str, float]]
# DDP's switch for broadcasting buffers each forward; newer torch renames it (and warns).
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


@dataclass
class RunResult:
    model: CLIP
    run_dir: Path
    step: int
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    samples_per_second: float = 0.0


def _device(cfg: TrainConfig, dist) -> torch.device:
    return resolve_device(cfg.run.device) if dist.world_size == 1 else dist.device


def fit(cfg: TrainConfig, *, resume: str | None = None, eval_fn: EvalFn | None = None) -> RunResult:
    """Train from a config alone: build the model, then the data sized for it, then run.

    With ``run.processes`` > 1 this starts that many local data-parallel processes and returns
    rank 0's result (:mod:`.processes`); under torchrun, torchrun's processes are the run's.
    """
    if cfg.run.processes > 1:
        if "WORLD_SIZE" not in os.environ:
            from .processes import fit_in_processes

            return fit_in_processes(cfg, resume=resume, eval_fn=eval_fn)
        log.warning(
            "run.processes=%d is ignored: torchrun started WORLD_SIZE=%s processes",
            cfg.run.processes,
            os.environ["WORLD_SIZE"],
        )
    return fit_this_process(cfg, resume=resume, eval_fn=eval_fn)


def fit_this_process(
    cfg: TrainConfig, *, resume: str | None = None, eval_fn: EvalFn | None = None
) -> RunResult:
    """``fit`` in this process, as one rank of the group torchrun's environment describes
    (or alone)."""
    from .data import build_batches

    dist = init_distributed()
    torch.manual_seed(cfg.run.seed)  # the same initial weights on every rank
    model = build_model(cfg, _device(cfg, dist))
    batches = build_batches(cfg, image_size=model.image_size, context_length=model.context_length)
    return train(cfg, batches, resume=resume, eval_fn=eval_fn, model=model)


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
    if model.config.vision_cfg.is_resnet:  # convolutions run ~30% faster channels-last
        model = model.to(memory_format=torch.channels_last)
    if m.init_temperature and m.pretrained is None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1 / m.init_temperature))
    if cfg.loss.name == "siglip" and model.logit_bias is None:
        # SigLIP learns a bias too; start where the paper does (t = 10, b = -10).
        model.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_LOGIT_BIAS, device=device))
        if m.pretrained is None:
            with torch.no_grad():
                model.logit_scale.fill_(SIGLIP_INIT_LOGIT_SCALE)
    return model


def _memory_format(model: CLIP) -> torch.memory_format:
    return torch.channels_last if model.config.vision_cfg.is_resnet else torch.contiguous_format


def _loss_options(cfg: TrainConfig) -> dict[str, Any]:
    """Only the options the chosen loss takes: ``create_loss`` rejects the others."""
    options: dict[str, Any] = {}
    if cfg.loss.name == "clip":
        options["local_loss"] = cfg.loss.local_loss
    if cfg.loss.label_smoothing and cfg.loss.name in ("clip", "distill"):
        options["label_smoothing"] = cfg.loss.label_smoothing
    return options


def _autocast(
    precision: str, device: torch.device
) -> Callable[[], contextlib.AbstractContextManager]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "amp_bf16" else torch.float16
    return partial(torch.autocast, device.type, dtype=dtype)


def _build_teacher(cfg: TrainConfig, device: torch.device) -> nn.Module | None:
    if cfg.loss.name != "distill":
        return None
    teacher = create_model(cfg.loss.teacher, cfg.loss.teacher_pretrained or None, device=device)
    return teacher.eval().requires_grad_(False)


def train(
    cfg: TrainConfig,
    batches: StepBatches,
    *,
    resume: str | None = None,
    eval_fn: EvalFn | None = None,
    model: CLIP | None = None,
) -> RunResult:
    """Run (or resume) training as ``cfg`` says, on ``batches``; return the model and history."""
    dist = init_distributed()
    device = _device(cfg, dist)
    torch.manual_seed(cfg.run.seed + dist.rank)
    run_dir = Path(cfg.run.out_dir)
    is_main = dist.rank == 0
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    model = model if model is not None else build_model(cfg, device)
    optimizer = create_optimizer(model, cfg.optim)
    scaler = torch.amp.GradScaler(device.type) if cfg.run.precision == "amp_fp16" else None
    step = 0
    if resume:
        step = load_checkpoint(resolve_resume(run_dir, resume), model, optimizer, scaler)
    wrapped: nn.Module = model
    if dist.world_size > 1:
        ids = [device.index] if device.type == "cuda" else None
        # BatchNorm running statistics stay per rank (rank 0's are saved): they never enter a
        # training step, and broadcasting them each forward cost 6% of a shapes-rn step.
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=ids, **_NO_BUFFER_SYNC)
    if cfg.model.compile:
        wrapped = torch.compile(wrapped)

    loss_fn = create_loss(cfg.loss.name, **_loss_options(cfg))
    ctx = StepContext(
        autocast=_autocast(cfg.run.precision, device),
        grad_clip=cfg.optim.grad_clip,
        scaler=scaler,
        teacher=_build_teacher(cfg, device),
    )
    result = RunResult(model=model, run_dir=run_dir, step=step)
    log_file = open(run_dir / "log.jsonl", "a") if is_main else None  # noqa: SIM115
    progress = TrainProgress(cfg.run.steps, start=step, enabled=is_main and cfg.run.progress)
    tensorboard = _tensorboard(run_dir) if is_main and cfg.run.tensorboard else None
    batch_size = cfg.data.batch_size * dist.world_size
    start_time, start_step = time.perf_counter(), step
    try:
        with progress:
            for pixels, tokens in batches(step):
                if step >= cfg.run.steps:
                    break
                lr = lr_at(step, cfg.optim, cfg.run.steps)
                set_lr(optimizer, lr)
                pixels = pixels.to(device, memory_format=_memory_format(model))
                micro = list(zip(pixels.chunk(cfg.optim.accum_steps),
                                 tokens.to(device).chunk(cfg.optim.accum_steps), strict=True))  # fmt: skip
                metrics = train_step(wrapped, loss_fn, micro, optimizer, ctx)
                step += 1
                elapsed = time.perf_counter() - start_time
                metrics.update(
                    step=step, lr=lr, samples_per_s=(step - start_step) * batch_size / elapsed
                )
                progress.update(step, metrics)
                if step % cfg.run.log_every == 0 or step == cfg.run.steps:
                    result.history.append(metrics)
                    _log(log_file, tensorboard, metrics)
                if is_main and cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0:
                    save_checkpoint(run_dir, step, model, optimizer, scaler, cfg.run.keep_last)
                if eval_fn is not None and cfg.run.eval_every and step % cfg.run.eval_every == 0:
                    result.evals.append({"step": step, **eval_fn(model)})
                    _log(log_file, tensorboard, {"step": step, **result.evals[-1]})
        if is_main and cfg.run.checkpoint_every and step % cfg.run.checkpoint_every:
            save_checkpoint(run_dir, step, model, optimizer, scaler, cfg.run.keep_last)
    finally:
        if log_file is not None:
            log_file.close()
        if tensorboard is not None:
            tensorboard.close()
    result.step = step
    result.samples_per_second = (
        (step - start_step) * batch_size / max(1e-9, time.perf_counter() - start_time)
    )
    return result


def _log(log_file, tensorboard, metrics: dict[str, Any]) -> None:
    if log_file is not None:
        log_file.write(json.dumps({**metrics, "time": time.time()}) + "\n")
        log_file.flush()
    if tensorboard is not None:
        for key, value in metrics.items():
            if key != "step" and isinstance(value, int | float):
                tensorboard.add_scalar(key, value, metrics["step"])


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "run.tensorboard=true needs the tensorboard package: pip install 'clipforge[tensorboard]'"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))
