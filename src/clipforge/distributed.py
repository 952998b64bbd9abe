"""Process-group helpers for multi-process training; model code never calls any of this.

The trainer joins the group with :func:`init_distributed` (``torchrun`` sets the environment);
the losses use :func:`world_info` and the two collectives that carry gradients back to the rank
that owns the data, :func:`all_gather_with_grad` and :func:`ring_exchange` (both need one tensor
shape on every rank). Nothing here keeps state: each call asks ``torch.distributed``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# Set by torchrun for every worker; init_distributed needs all of them once WORLD_SIZE is set.
TORCHRUN_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run.

    ``backend`` is None for a plain single process, where no process group exists.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str | None
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the one rank that writes checkpoints and logs."""
        return self.rank == 0


def world_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the default group; ``(0, 1)`` when no group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_backend() -> str:
    """NCCL when CUDA is available (the only fast GPU backend), gloo otherwise (CPU)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to run on. ``None`` or ``"auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is
    available and the CPU otherwise; anything else must name a device this machine has."""
    if device is None or device == "auto":
        return _device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device ({err})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine")
    return resolved


def _device(local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(
            f"environment variable {name}={value!r} is not an integer (torchrun sets RANK, "
            "WORLD_SIZE and LOCAL_RANK together)"
        ) from None


def _env_rank() -> tuple[int, int]:
    """torchrun's ``RANK`` and ``WORLD_SIZE``, checked against each other."""
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} is outside [0, WORLD_SIZE={world_size})")
    return rank, world_size


def resolve_rank(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the arguments, else the initialised process group, else
    torchrun's ``RANK``/``WORLD_SIZE``, else ``(0, 1)``.

    For work shared out by rank without collectives (each rank embeds its own partitions),
    which need not start a process group to know its share.
    """
    if (rank is None) != (world_size is None):
        raise ValueError(f"pass rank and world_size together (got {rank=}, {world_size=})")
    if rank is None:
        rank, world_size = world_info()
        if world_size == 1 and "WORLD_SIZE" in os.environ:
            rank, world_size = _env_rank()
    if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be in [0, world_size={world_size!r})")
    return rank, world_size


def init_distributed(
    backend: str | None = None,
    *,
    timeout: timedelta = timedelta(minutes=30),
    device: str | torch.device | None = None,
) -> DistInfo:
    """Join the process group described by torchrun's environment variables.

    Without ``WORLD_SIZE`` in the environment this is a single-process run on ``device``
    (:func:`resolve_device`): nothing is initialised and the result says rank 0 of 1. With it,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` must be set too (torchrun sets
    all five), and each rank runs on its own device (``cuda:LOCAL_RANK`` or the CPU).
    ``backend`` defaults to :func:`default_backend`; with NCCL the current CUDA device is set to
    ``LOCAL_RANK`` so that collectives run on this process's GPU. ``timeout`` bounds every
    collective, so a rank that died turns into an error on the others rather than a hang.
    Called again once the group exists, it describes that group instead of starting another.
    """
    if not (dist.is_available() and dist.is_initialized()):
        if "WORLD_SIZE" not in os.environ:
            return DistInfo(0, 1, 0, None, resolve_device(device))
        missing = [name for name in TORCHRUN_ENV_VARS if name not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE is set but {', '.join(missing)} is not; launch with torchrun, "
                f"which sets {', '.join(TORCHRUN_ENV_VARS)}"
            )
        (rank, world_size), local_rank = _env_rank(), _env_int("LOCAL_RANK")
        backend = backend or default_backend()
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout
        )
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        logger.info("joined the %s process group via %s as rank %d", backend, where, rank)
    rank, world_size = world_info()
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    return DistInfo(rank, world_size, local_rank, dist.get_backend(), _device(local_rank))


class _AllGather(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0; backward sums the gradients of all ranks
    and hands each rank the slice of its own rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world_size = world_info()
        tensor = tensor.contiguous()
        ctx.rows = slice(rank * tensor.shape[0], (rank + 1) * tensor.shape[0])
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        # Each rank holds the gradient of its own loss w.r.t. every gathered row. The rows of
        # this rank feed all of those losses, so their gradient is the sum over ranks. An
        # all_reduce does that on every backend (gloo has no reduce_scatter).
        summed = grad_output.contiguous().clone()
        dist.all_reduce(summed)
        return summed[ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` stacked in rank order: (B, ...) -> (world_size * B, ...).

    Unlike ``dist.all_gather``, gradients flow back: the gradient reaching this rank's
    ``tensor`` is the sum over ranks of the gradients w.r.t. its rows in the gathered tensor,
    which is what DDP's gradient averaging expects (see :mod:`clipforge.losses`). A single
    process gets ``tensor`` back unchanged.
    """
    if world_info()[1] == 1:
        return tensor
    if tensor.dim() == 0:
        raise ValueError("all_gather_with_grad needs a tensor with a batch dimension, got a scalar")
    return _AllGather.apply(tensor)


def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, on every rank; without
    gradient (for data, e.g. each rank's share of a rendered data set). Ranks may hold
    different numbers of rows; the other dimensions must agree. With NCCL the exchange goes
    through this process's GPU and the result returns to ``tensor``'s device."""
    world_size = world_info()[1]
    if world_size == 1:
        return tensor
    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    counts = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size)]
    dist.all_gather(counts, torch.tensor([tensor.shape[0]], device=device))
    rows = [int(count) for count in counts]
    padded = tensor.new_zeros((max(rows), *tensor.shape[1:]), device=device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, rows, strict=True)]).to(tensor.device)


def _send_recv(tensor: torch.Tensor, send_to: int, recv_from: int) -> torch.Tensor:
    received = torch.empty_like(tensor)
    ops = [
        dist.P2POp(dist.isend, tensor, send_to),
        dist.P2POp(dist.irecv, received, recv_from),
    ]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return received


class _RingShift(torch.autograd.Function):
    """Pass a tensor one step around the ring of ranks; backward passes the gradient one step
    the other way, back to the rank the tensor came from."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        rank, world_size = world_info()
        ctx.left, ctx.right = (rank - 1) % world_size, (rank + 1) % world_size
        return _send_recv(tensor.contiguous(), send_to=ctx.right, recv_from=ctx.left)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return _send_recv(grad_output.contiguous(), send_to=ctx.left, recv_from=ctx.right)


def ring_exchange(tensor: torch.Tensor) -> torch.Tensor:
    """Send ``tensor`` to rank + 1 and return the one received from rank - 1 (mod world size).

    Repeating it ``world_size - 1`` times shows every rank every other rank's tensor while
    holding only one at a time, which is how the SigLIP loss avoids the global similarity
    matrix. Differentiable: the gradient of the returned tensor goes back to the rank that
    sent it. All ranks must call it together with tensors of one shape; a single process gets
    ``tensor`` back unchanged.
    """
    if world_info()[1] == 1:
        return tensor
    return _RingShift.apply(tensor)
