"""Two-process DDP training on CPU (gloo) through torchrun equals one process on the global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

import clipforge
from clipforge.train import train
from test_train import config, synthetic_batches  # the worker builds the same run

ROOT = Path(__file__).parent.parent

WORKER = """
import sys
from pathlib import Path
import torch
from clipforge.distributed import init_distributed
from clipforge.train import train
from tests.test_train import config, synthetic_batches

dist = init_distributed()
batches = synthetic_batches(batch_size=4)
batches.rank, batches.world_size = dist.rank, dist.world_size
batches.steps_per_epoch = 64 // (4 * dist.world_size)
cfg = config(Path(sys.argv[1]), **{"data.batch_size": 4, "run.steps": 4, "run.checkpoint_every": 4})
train(cfg, batches)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "ddp").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           f"--master_port={_free_port()}", str(script), str(tmp_path / "ddp")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (tmp_path / "single").mkdir()
    cfg = config(tmp_path / "single", **{"run.steps": 4, "run.checkpoint_every": 4})
    single = train(cfg, synthetic_batches(batch_size=8))

    lines = (tmp_path / "ddp" / "run" / "log.jsonl").read_text().splitlines()
    ddp_losses = [json.loads(line)["loss"] for line in lines]
    single_losses = [h["loss"] for h in single.history]
    torch.testing.assert_close(
        torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-4, atol=1e-5
    )
    ddp_model = clipforge.create_model(
        tmp_path / "ddp" / "run" / "checkpoints" / "step_4.safetensors"
    )
    # The attention key bias has an analytically zero gradient: Adam turns its float noise
    # (which differs between one and two processes) into updates of ~1e-5, hence the atol.
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(
            ddp_model.state_dict()[name], value, rtol=1e-3, atol=5e-5, msg=name
        )
