"""``fit``: train from a config alone, in this process, as one torchrun rank, or in
``run.processes`` local processes that ``fit`` starts itself.

Small models train faster as N one-thread processes on one global batch than as one N-thread
process (``docs/benchmarks.md``). Each worker joins a group on localhost as a torchrun rank
would; rank 0 hands its weights and history to the parent, which builds no model of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import tempfile
import threading
from pathlib import Path
from unittest import mock

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..distributed import init_distributed, resolve_device
from ..models import create_model, save_model
from .build import build_model
from .config import TrainConfig
from .data import build_batches
from .loop import EvalFn, RunResult, train
from .run_folder import claim_run_folder
from .stop import STOP_SIGNALS, TrainingStopped

log = logging.getLogger(__name__)
# Rank 0's hand-off to the parent: the trained model and its result, or how the run stopped.
_WEIGHTS, _RESULT, _STOPPED = "model.safetensors", "result.pt", "stopped.pkl"


def fit(cfg: TrainConfig, *, resume: str | None = None, eval_fn: EvalFn | None = None) -> RunResult:
    """Train from a config alone: build the model, then the data sized for it, then run.

    Without ``eval_fn``, ``run.eval_every`` evaluates what
    :func:`clipforge.evaluate.periodic.periodic_eval_fn` chooses for the config.
    With ``run.processes`` > 1 this starts that many local data-parallel processes and returns
    rank 0's result; under torchrun, torchrun's processes are the run's.
    """
    if eval_fn is None and cfg.run.eval_every:
        from ..evaluate.periodic import periodic_eval_fn

        eval_fn = periodic_eval_fn(cfg.run.eval_dataset, data_kind=cfg.data.kind, seed=cfg.run.seed)
    if cfg.run.processes > 1:
        if "WORLD_SIZE" not in os.environ:
            return _fit_in_processes(cfg, resume=resume, eval_fn=eval_fn)
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
    where = init_distributed(device=cfg.run.device)
    torch.manual_seed(cfg.run.seed)  # the same initial weights on every rank
    model = build_model(cfg, where.device)
    batches = build_batches(cfg, image_size=model.image_size, context_length=model.context_length)
    return train(cfg, batches, resume=resume, eval_fn=eval_fn, model=model, dist=where)


def _fit_in_processes(
    cfg: TrainConfig, *, resume: str | None = None, eval_fn: EvalFn | None = None
) -> RunResult:
    """Train as ``cfg`` says in ``cfg.run.processes`` spawned processes; return rank 0's result."""
    n = cfg.run.processes
    try:
        pickle.dumps(eval_fn)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise TypeError(
            f"run.processes > 1 sends eval_fn to the worker processes, so it must be picklable "
            f"(a module-level function or a functools.partial of one): {err}"
        ) from None
    run_dir = Path(cfg.run.out_dir)
    claim_run_folder(run_dir, resume=resume, overwrite=cfg.run.overwrite)  # before any worker
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".processes-", dir=run_dir) as tmp:
        handoff = Path(tmp)
        threads = max(1, torch.get_num_threads() // n)
        log.info("training in %d processes of %d thread(s) each", n, threads)
        # What torchrun would set, but RANK and LOCAL_RANK, which each worker sets to its own.
        group = {"WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        log_level = logging.getLogger().getEffectiveLevel()
        # Workers start with OMP_NUM_THREADS set: torch.set_num_threads in a worker is not
        # enough, as its OpenMP pool is sized at import (docs/benchmarks.md).
        with mock.patch.dict(os.environ, OMP_NUM_THREADS=str(threads)):
            workers = mp.start_processes(
                _worker,
                args=(group, threads, log_level, cfg, resume, eval_fn, handoff),
                nprocs=n,
                join=False,
                start_method="spawn",
            )
        try:
            _join(workers)
        except mp.ProcessRaisedException as failure:
            raise _worker_error(handoff, failure) from None
        if (handoff / _STOPPED).is_file():
            raise pickle.loads((handoff / _STOPPED).read_bytes())
        model = create_model(handoff / _WEIGHTS, device=resolve_device(cfg.run.device))
        out = torch.load(handoff / _RESULT, weights_only=True)
    return RunResult(model=model, run_dir=run_dir, **out)


def _worker(
    rank: int,
    group: dict[str, str],
    threads: int,
    log_level: int,
    cfg: TrainConfig,
    resume: str | None,
    eval_fn: EvalFn | None,
    handoff: Path,
) -> None:
    os.environ.update(group, RANK=str(rank), LOCAL_RANK=str(rank))
    # A process group of its own: a terminal's Ctrl-C or a scheduler's group-wide SIGTERM
    # reaches the parent only, which passes it on once (_join); twice would kill the worker.
    os.setpgrp()
    torch.set_num_threads(threads)
    logging.basicConfig(level=log_level if rank == 0 else logging.WARNING)
    try:
        result = fit_this_process(cfg, resume=resume, eval_fn=eval_fn)
        if rank == 0:
            save_model(result.model, handoff / _WEIGHTS)
            out = {k: v for k, v in vars(result).items() if k not in ("model", "run_dir")}
            torch.save(out, handoff / _RESULT)
    except TrainingStopped as stopped:
        # Every rank stops after the same step; exiting cleanly (not raising) keeps torch from
        # terminating rank 0 while it writes the checkpoint of that step.
        if rank == 0:
            (handoff / _STOPPED).write_bytes(pickle.dumps(stopped))
    except Exception as err:
        with contextlib.suppress(Exception):  # an exception that does not pickle stays torch's
            (handoff / f"error-{rank}.pkl").write_bytes(pickle.dumps(err))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _join(workers: mp.ProcessContext) -> None:
    """Wait for the workers, passing each Ctrl-C or SIGTERM this process gets on to them (they
    sit in their own process group): the first stops them together at a checkpoint
    (:mod:`.stop`), a second kills them."""

    def forward(signum: int, frame: object) -> None:
        for process in workers.processes:
            if process.is_alive():
                os.kill(process.pid, signum)

    with contextlib.ExitStack() as restore:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                restore.callback(signal.signal, signum, signal.signal(signum, forward))
        while not workers.join():
            pass


def _worker_error(handoff: Path, failure: mp.ProcessRaisedException) -> BaseException:
    """The exception the failed worker raised, so that callers (and the CLI's one-line errors)
    see a ``DataError`` as a ``DataError``; torch's report, with the worker's traceback, when
    the worker could not save it."""
    try:
        return pickle.loads((handoff / f"error-{failure.error_index}.pkl").read_bytes())
    except (OSError, pickle.UnpicklingError, AttributeError, EOFError, TypeError):
        return failure


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
