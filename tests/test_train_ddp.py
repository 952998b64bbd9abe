"""Two-process DDP training on CPU (gloo) through torchrun equals one process on the global batch."""

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import clipforge
from clipforge.train import fit, train
from test_train import config, synthetic_batches  # the worker builds the same run

ROOT = Path(__file__).parent.parent

WORKER = """
import sys
from pathlib import Path
import pytest
import torch
from clipforge.distributed import init_distributed
from clipforge.train import fit, train
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


def _shapes_run(tmp_path: Path, name: str, **overrides: str):
    # 65 samples: the two ranks render shares of 32 and 33, which the exchange must join.
    sets = {"data.num_samples": 65, "run.steps": 4, "run.checkpoint_every": 4, **overrides}
    (tmp_path / name).mkdir()
    return config(tmp_path / name, **{k: str(v) for k, v in sets.items()})


def test_fit_in_two_processes_matches_one_process_fit(tmp_path: Path) -> None:
    """``run.processes=2`` spawns its own gloo group: the same losses and weights as one
    process on the global batch, and rank 0's history and checkpoints in the run directory."""
    two = fit(_shapes_run(tmp_path, "two", **{"run.processes": 2, "data.batch_size": 4}))
    one = fit(_shapes_run(tmp_path, "one", **{"data.batch_size": 8}))

    assert two.step == 4 and len(two.history) == 4 and two.samples_per_second > 0
    torch.testing.assert_close(
        torch.tensor([h["loss"] for h in two.history]),
        torch.tensor([h["loss"] for h in one.history]),
        rtol=1e-4,
        atol=1e-5,
    )
    for name, value in one.model.state_dict().items():  # atol: see the torchrun test above
        torch.testing.assert_close(two.model.state_dict()[name], value, rtol=1e-3, atol=5e-5)
    run_dir = tmp_path / "two" / "run"
    assert (run_dir / "checkpoints" / "step_4.safetensors").is_file()
    assert len((run_dir / "log.jsonl").read_text().splitlines()) == 4
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []  # handoff gone


def test_fit_in_processes_needs_a_picklable_eval_fn(tmp_path: Path) -> None:
    cfg = _shapes_run(tmp_path, "run", **{"run.processes": 2, "data.batch_size": 4})
    with pytest.raises(TypeError, match="eval_fn .* must be picklable"):
        fit(cfg, eval_fn=lambda model: {})


def test_processes_key_is_ignored_under_torchrun(tmp_path: Path, monkeypatch, caplog) -> None:
    """torchrun has started the processes already: fit trains as its rank, with a warning."""
    import clipforge.train.launch as launch

    cfg = _shapes_run(tmp_path, "run", **{"run.processes": 2})
    monkeypatch.setenv("WORLD_SIZE", "4")
    ran_here = []
    monkeypatch.setattr(launch, "fit_this_process", lambda cfg, **kwargs: ran_here.append(cfg))
    with caplog.at_level("WARNING", logger="clipforge.train.launch"):
        launch.fit(cfg)
    assert ran_here == [cfg]
    assert "run.processes=2 is ignored: torchrun started WORLD_SIZE=4" in caplog.text


def test_the_periodic_shapes_evaluation_can_travel_to_workers() -> None:
    from clipforge.evaluate.shapes_suite import shapes_eval_fn

    restored = pickle.loads(pickle.dumps(shapes_eval_fn(seed=3)))
    assert restored.keywords["seed"] == 3


def test_a_worker_error_reaches_the_caller_as_itself(tmp_path: Path) -> None:
    """A data error in a worker is raised in the parent as the same DataError (which the CLI
    prints as one line), not as torch's wrapper around a traceback."""
    from clipforge.data.skips import DataError

    cfg = _shapes_run(tmp_path, "run", **{"run.processes": 2, "data.kind": "wds",
                                          "data.train": str(tmp_path / "missing-{0..1}.tar")})  # fmt: skip
    with pytest.raises(DataError, match="2 of 2 shards not found"):
        fit(cfg)
    assert [p.name for p in (tmp_path / "run" / "run").iterdir() if p.name.startswith(".")] == []
