"""The losses under torch.distributed: 2 and 3 gloo processes against one process on the
full batch.

Each rank runs a tiny model (a linear layer per modality in front of the normalised features,
the log scale and the bias) on its share of a fixed batch and records its loss and gradients.
The checks are what DDP training would see: the losses average to the full-batch loss (and
equal it on every rank for the gathering variants), each rank's feature gradients are
world_size times the full-batch gradients of its rows (DDP then divides by world_size), and
the parameter gradients averaged over ranks, as DDP averages them, equal the full-batch ones.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from clipforge.distributed import (
    DistInfo,
    all_gather_with_grad,
    default_backend,
    init_distributed,
    ring_exchange,
    world_info,
)
from clipforge.losses import (
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    clip_loss,
    clip_loss_distributed,
    cloob_loss,
    create_loss,
    distill_loss,
    infoloob_loss,
    siglip_loss,
    siglip_loss_distributed,
)

# Two ranks as in most runs; three so that left and right neighbours differ in the ring and
# the ring takes more than one step.
WORLD_SIZES = (2, 3)
B_LOCAL = 3
D_IN, D, D_TEACHER = 5, 8, 4
TIMEOUT_S = 120.0

# name -> (distributed loss each rank calls, single-process loss on the full batch, whether
# every rank returns the full-batch loss rather than a share of it)
SCENARIOS: dict[str, tuple[Callable, Callable, bool]] = {
    "clip_gather": (
        functools.partial(clip_loss_distributed, local_loss=False, label_smoothing=0.1),
        functools.partial(clip_loss, label_smoothing=0.1),
        True,
    ),
    "clip_local": (
        functools.partial(clip_loss_distributed, local_loss=True, label_smoothing=0.1),
        functools.partial(clip_loss, label_smoothing=0.1),
        False,
    ),
    "siglip_ring": (siglip_loss_distributed, siglip_loss, False),
    "infoloob": (create_loss("infoloob"), infoloob_loss, True),
    "cloob": (
        create_loss("cloob", hopfield_beta=4.0),
        functools.partial(cloob_loss, hopfield_beta=4.0),
        True,
    ),
    "distill": (
        create_loss("distill", distill_temperature=2.0),
        functools.partial(distill_loss, distill_temperature=2.0),
        True,
    ),
}


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image_proj = nn.Linear(D_IN, D, dtype=torch.float64)
        self.text_proj = nn.Linear(D_IN, D, dtype=torch.float64)
        self.logit_scale = nn.Parameter(torch.tensor(SIGLIP_INIT_LOGIT_SCALE, dtype=torch.float64))
        self.logit_bias = nn.Parameter(torch.tensor(SIGLIP_INIT_LOGIT_BIAS, dtype=torch.float64))


def _step(
    name: str, loss_fn: Callable, state: dict, data: dict[str, torch.Tensor], rows: slice
) -> dict[str, torch.Tensor]:
    """Forward the given rows through a fresh copy of the model, backward, return the loss and
    the gradients w.r.t. the features and every parameter (zeros where none arrived)."""
    model = _Toy()
    model.load_state_dict(state)
    images = F.normalize(model.image_proj(data["images"][rows]), dim=-1)  # (b, D)
    texts = F.normalize(model.text_proj(data["texts"][rows]), dim=-1)  # (b, D)
    images.retain_grad()
    texts.retain_grad()
    extra = {}
    if name == "distill":
        extra = {
            "teacher_image_features": data["teacher_images"][rows],
            "teacher_text_features": data["teacher_texts"][rows],
            "teacher_logit_scale": 20.0,
        }
    loss = loss_fn(images, texts, model.logit_scale.exp(), model.logit_bias, **extra)
    loss.backward()
    out = {"loss": loss.detach(), "images": images.grad, "texts": texts.grad}
    for param_name, param in model.named_parameters():
        out[f"param.{param_name}"] = torch.zeros_like(param) if param.grad is None else param.grad
    return out


def _check_collectives(rank: int) -> dict[str, torch.Tensor]:
    """Run the two differentiable collectives on small known tensors."""
    local = torch.full((2, 3), float(rank + 1), dtype=torch.float64, requires_grad=True)
    gathered = all_gather_with_grad(local)  # (world_size * 2, 3)
    weights = torch.arange(gathered.numel(), dtype=torch.float64).view_as(gathered)
    (gathered * weights * (rank + 1)).sum().backward()
    sent = torch.full((4,), float(rank + 1), dtype=torch.float64, requires_grad=True)
    received = ring_exchange(sent)
    (received * 10.0 * (rank + 1)).sum().backward()
    return {
        "gathered": gathered.detach(),
        "gather_grad": local.grad,
        "received": received.detach(),
        "ring_grad": sent.grad,
    }


def _worker(rank: int, world_size: int, port: int, data_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    info = init_distributed("gloo", timeout=timedelta(seconds=60))
    try:
        saved = torch.load(data_path)
        rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        results = {
            name: _step(name, loss_fn, saved["state"], saved["data"], rows)
            for name, (loss_fn, _, _) in SCENARIOS.items()
        }
        results["collectives"] = _check_collectives(rank)
        results["info"] = info
        results["world_info"] = world_info()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(world_size: int, data_path: Path, out_dir: Path) -> None:
    context = mp.spawn(
        _worker,
        args=(world_size, _free_port(), str(data_path), str(out_dir)),
        nprocs=world_size,
        join=False,
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=max(deadline - time.monotonic(), 0.0)):
        if time.monotonic() >= deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"distributed workers did not finish within {TIMEOUT_S:.0f} s")


@pytest.fixture(scope="module", params=WORLD_SIZES, ids=lambda n: f"{n}-ranks")
def runs(request, tmp_path_factory) -> tuple[list[dict], dict]:
    """Per-rank results of a multi-process run and the single-process full-batch reference."""
    world_size = request.param
    torch.manual_seed(0)
    data = {
        "images": torch.randn(world_size * B_LOCAL, D_IN, dtype=torch.float64),
        "texts": torch.randn(world_size * B_LOCAL, D_IN, dtype=torch.float64),
        "teacher_images": F.normalize(
            torch.randn(world_size * B_LOCAL, D_TEACHER, dtype=torch.float64), dim=-1
        ),
        "teacher_texts": F.normalize(
            torch.randn(world_size * B_LOCAL, D_TEACHER, dtype=torch.float64), dim=-1
        ),
    }
    state = _Toy().state_dict()
    tmp = tmp_path_factory.mktemp(f"losses_{world_size}_ranks")
    torch.save({"state": state, "data": data}, tmp / "inputs.pt")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        env.setenv("MKL_NUM_THREADS", "1")
        _spawn(world_size, tmp / "inputs.pt", tmp)
    ranks = [torch.load(tmp / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)]
    reference = {
        name: _step(name, full_loss, state, data, slice(None))
        for name, (_, full_loss, _) in SCENARIOS.items()
    }
    return ranks, reference


def test_workers_joined_the_group_through_init_distributed(runs):
    ranks, _ = runs
    world = len(ranks)
    for rank, result in enumerate(ranks):
        assert result["info"] == DistInfo(rank, world, rank, "gloo", torch.device("cpu"))
        assert result["world_info"] == (rank, world)


def test_all_gather_with_grad_returns_all_rows_and_sums_gradients(runs):
    ranks, _ = runs
    world = len(ranks)
    expected = torch.cat(
        [torch.full((2, 3), float(r + 1), dtype=torch.float64) for r in range(world)]
    )
    weights = torch.arange(expected.numel(), dtype=torch.float64).view_as(expected)
    # Rank r's loss weights the gathered rows by (r + 1) * weights; this rank's rows feed all.
    summed = weights * sum(r + 1 for r in range(world))
    for rank, result in enumerate(ranks):
        checks = result["collectives"]
        torch.testing.assert_close(checks["gathered"], expected)
        torch.testing.assert_close(checks["gather_grad"], summed[2 * rank : 2 * rank + 2])


def test_ring_exchange_receives_from_the_left_and_returns_gradients(runs):
    ranks, _ = runs
    for rank, result in enumerate(ranks):
        checks = result["collectives"]
        left, right = (rank - 1) % len(ranks), (rank + 1) % len(ranks)
        torch.testing.assert_close(
            checks["received"], torch.full((4,), float(left + 1), dtype=torch.float64)
        )
        # What this rank sent was used by its right neighbour, whose loss weights it 10 (r + 1).
        torch.testing.assert_close(
            checks["ring_grad"], torch.full((4,), 10.0 * (right + 1), dtype=torch.float64)
        )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_loss_equals_full_batch_loss(runs, name):
    ranks, reference = runs
    losses = torch.stack([result[name]["loss"] for result in ranks])
    torch.testing.assert_close(losses.mean(), reference[name]["loss"])
    if SCENARIOS[name][2]:
        for loss in losses:
            torch.testing.assert_close(loss, reference[name]["loss"])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_feature_gradients_are_world_size_times_full_batch_rows(runs, name):
    ranks, reference = runs
    for rank, result in enumerate(ranks):
        rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        for key in ("images", "texts"):
            torch.testing.assert_close(result[name][key], len(ranks) * reference[name][key][rows])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_ddp_averaged_parameter_gradients_equal_full_batch(runs, name):
    ranks, reference = runs
    params = [key for key in reference[name] if key.startswith("param.")]
    assert len(params) == 6
    for key in params:
        averaged = torch.stack([result[name][key] for result in ranks]).mean(dim=0)
        torch.testing.assert_close(averaged, reference[name][key], msg=f"{name}: {key}")
        if key != "param.logit_bias" or name == "siglip_ring":
            assert reference[name][key].abs().sum() > 0, f"{name}: {key} got no gradient"


def test_single_process_defaults(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert world_info() == (0, 1)
    info = init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.backend) == (0, 1, 0, None)
    assert info.is_main and not dist.is_initialized()
    tensor = torch.randn(3, 4)
    assert all_gather_with_grad(tensor) is tensor
    assert ring_exchange(tensor) is tensor
    images, texts = F.normalize(torch.randn(2, 4, 8), dim=-1)
    torch.testing.assert_close(
        siglip_loss_distributed(images, texts, 10.0, -10.0), siglip_loss(images, texts, 10.0, -10.0)
    )
    for local_loss in (True, False):
        torch.testing.assert_close(
            clip_loss_distributed(images, texts, 10.0, local_loss=local_loss),
            clip_loss(images, texts, 10.0),
        )


def test_init_distributed_names_missing_or_bad_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT"):
        init_distributed()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("RANK", "two")
    with pytest.raises(ValueError, match="RANK='two'"):
        init_distributed()
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside"):
        init_distributed()
    assert not dist.is_initialized()


def test_default_backend_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_backend() == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_backend() == "nccl"
