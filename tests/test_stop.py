"""Ctrl-C and SIGTERM stop every process of a run at one step, with a checkpoint, a clean run
folder and one line saying where it stopped; ``--resume latest`` then continues it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "width": 16, "heads": 1, "layers": 1},
}


def _command(tmp_path: Path, processes: int, *extra: str) -> list[str]:
    model_file = tmp_path / "tiny.json"
    model_file.write_text(json.dumps(TINY))
    sets = [f"model.name={model_file}", f"run.out_dir={tmp_path / 'run'}", "run.steps=100000",
            "run.checkpoint_every=100000", "run.log_every=1", "run.progress=false",
            "run.precision=fp32", "data.num_samples=64", "data.batch_size=8", "data.workers=0",
            f"run.processes={processes}", *extra]  # fmt: skip
    args = [sys.executable, "-m", "clipforge", "train", "shapes-demo"]
    for override in sets:
        args += ["--set", override]
    return args


def _wait_for_steps(run: Path, proc: subprocess.Popen, steps: int) -> None:
    log = run / "log.jsonl"
    deadline = time.monotonic() + 180
    while not (log.is_file() and len(log.read_text().splitlines()) >= steps):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)


@pytest.mark.parametrize(("processes", "signum"), [(2, signal.SIGTERM), (1, signal.SIGINT)])
def test_a_signal_stops_the_run_at_a_checkpoint_and_resume_continues(
    tmp_path: Path, processes: int, signum: signal.Signals
) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(_command(tmp_path, processes), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for_steps(run, proc, steps=2)
    proc.send_signal(signum)  # to the parent alone, as `kill` or a scheduler sends it
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signum, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    match = re.fullmatch(
        rf"stopped by {signum.name} after step (\d+) \(checkpoint in .*\); run the same "
        r"command with --resume latest to continue",
        lines[0],
    )
    assert match, lines[0]
    step = int(match.group(1))
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step_{step}"
    assert (run / "checkpoints" / f"step_{step}.state.pt").is_file()
    assert not list(run.glob(".processes-*")), "the hand-off folder was left behind"

    resumed = subprocess.run(
        [*_command(tmp_path, processes, f"run.steps={step + 2}"), "--resume", "latest"],
        env=env, text=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == step + 2
