"""The training loop: it orchestrates data, logging, checkpoints and periodic evaluation
around :func:`train_step`, which does the actual work."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..distributed import DistInfo, init_distributed
from ..models import CLIP
from ..progress import progress_bar
from .batches import StepBatches
from .build import build_model, new_state, step_context
from .config import TrainConfig
from .run_folder import claim_run_folder, resume_changes, run_record
from .state import load_checkpoint, resolve_resume, save_checkpoint
from .step import train_step
from .stop import StopSignals, TrainingStopped

EvalFn = Callable[[CLIP], dict[str, float]]


@dataclass
class RunResult:
    model: CLIP
    run_dir: Path
    step: int
    start_step: int = 0  # where this call began: a resumed run's checkpoint step
    history: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    samples_per_second: float = 0.0


def train(
    cfg: TrainConfig,
    batches: StepBatches,
    *,
    resume: str | None = None,
    eval_fn: EvalFn | None = None,
    model: CLIP | None = None,
    dist: DistInfo | None = None,
) -> RunResult:
    """Run (or resume) training as ``cfg`` says, on ``batches``; return the model and history.

    ``dist`` says where this process trains; without it this call joins torchrun's group (if
    any) through :func:`~clipforge.distributed.init_distributed`.
    """
    dist = dist or init_distributed(device=cfg.run.device)
    torch.manual_seed(cfg.run.seed + dist.rank)
    run_dir = Path(cfg.run.out_dir)
    if dist.is_main:
        claim_run_folder(run_dir, resume=resume, overwrite=cfg.run.overwrite)
        run_dir.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else build_model(cfg, dist.device)
    ctx = step_context(cfg, model, dist)
    state = new_state(cfg, model, ctx.precision)
    changes = {}
    if resume:
        saved = load_checkpoint(resolve_resume(run_dir, resume), state)
        changes = resume_changes(saved, cfg, dist.world_size)
    if dist.is_main:
        (run_dir / "config.yaml").write_text(cfg.to_yaml())
    run = cfg.run
    checkpoint_due = dist.is_main and run.checkpoint_every > 0
    save = partial(save_checkpoint, run_dir, state, keep_last=run.keep_last,
                   record=run_record(cfg, dist.world_size))  # fmt: skip
    result = RunResult(model=model, run_dir=run_dir, step=state.step, start_step=state.step)
    batch_size = cfg.data.batch_size * dist.world_size
    start_time, start_step = time.perf_counter(), state.step
    show, stopped, latest_eval = dist.is_main and run.progress, None, {}
    with (
        _run_log(run_dir, run.tensorboard, enabled=dist.is_main) as log,
        progress_bar("train", run.steps, start=state.step, enabled=show) as progress,
        StopSignals() as signals,
    ):
        if resume:
            log({"event": "resume", "step": state.step, "changed": changes})
        for batch in batches(state.step):
            if state.step >= run.steps:
                break
            metrics = train_step(state, batch, ctx)
            step, elapsed = state.step, time.perf_counter() - start_time
            metrics.update(step=step, samples_per_s=(step - start_step) * batch_size / elapsed)
            progress(
                step,
                f"loss {metrics['loss']:.3f}  lr {metrics['lr']:.2e}  "
                f"T {metrics['logit_scale']:.1f}  {metrics['samples_per_s']:.0f} samples/s"
                + "".join(f"  {k} {v:.3f}" for k, v in list(latest_eval.items())[1:3]),
            )
            if step % run.log_every == 0 or step == run.steps:
                result.history.append(metrics)
                log(metrics)
            if checkpoint_due and step % run.checkpoint_every == 0:
                save()
            if eval_fn is not None and run.eval_every and step % run.eval_every == 0:
                latest_eval = {"step": step, **eval_fn(model)}
                result.evals.append(latest_eval)
                log(latest_eval)
            if stopped := signals.requested(dist):  # before the next batch is fetched
                break
        if checkpoint_due and state.step % run.checkpoint_every:
            save()
    if stopped:
        raise TrainingStopped(stopped, state.step, str(run_dir))
    result.step = state.step
    elapsed = max(1e-9, time.perf_counter() - start_time)
    result.samples_per_second = (state.step - start_step) * batch_size / elapsed
    return result


@contextlib.contextmanager
def _run_log(
    run_dir: Path, tensorboard: bool, *, enabled: bool
) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Yields ``write(metrics)``: a line of ``log.jsonl`` and, with ``run.tensorboard``,
    TensorBoard scalars; a no-op when not ``enabled`` (every rank but the main one)."""
    if not enabled:
        yield lambda metrics: None
        return
    with contextlib.ExitStack() as stack:
        file = stack.enter_context(open(run_dir / "log.jsonl", "a"))
        board = stack.enter_context(_tensorboard(run_dir)) if tensorboard else None

        def write(metrics: dict[str, Any]) -> None:
            file.write(json.dumps({**metrics, "time": time.time()}) + "\n")
            file.flush()
            for key, value in metrics.items():
                if board is not None and key != "step" and isinstance(value, int | float):
                    board.add_scalar(key, value, metrics["step"])

        yield write


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "run.tensorboard=true needs the tensorboard package: pip install 'clipforge[tensorboard]'"
        ) from None
    return SummaryWriter(str(run_dir / "tensorboard"))
