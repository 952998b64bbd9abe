"""Stopping a run on Ctrl-C or SIGTERM: at a step every process agrees on, with a checkpoint.

The first signal only sets a flag that the loop reads between steps; every process of the run
then stops after the same step (the flags are combined across ranks), so the checkpoint written
there is consistent. A second signal acts as usual, for a run that must die at once.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import torch
import torch.distributed as torch_dist

from ..distributed import DistInfo

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingStopped(Exception):
    """The run stopped on a signal after ``step``; ``--resume latest`` continues it."""

    def __init__(self, signum: int, step: int, run_dir: str) -> None:
        super().__init__(signum, step, run_dir)  # the args pickle, for the multi-process parent
        self.signum, self.step, self.run_dir = signum, step, run_dir

    def __str__(self) -> str:
        latest = Path(self.run_dir) / "checkpoints" / "latest"
        where = f"checkpoint in {latest.parent}" if latest.is_file() else "no checkpoint written"
        return (
            f"stopped by {signal.Signals(self.signum).name} after step {self.step} ({where}); "
            "run the same command with --resume latest to continue"
        )


class StopSignals:
    """While entered, SIGINT and SIGTERM ask the run to stop instead of killing it.

    Handlers can only be set from the main thread; elsewhere (a run inside a thread) signals
    keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.__exit__()  # a second signal does what it would have done without us

    def requested(self, dist: DistInfo) -> int | None:
        """The signal that asked to stop, on any rank (all ranks get the same answer)."""
        if dist.world_size == 1:
            return self.signum
        flag = torch.tensor([self.signum or 0], device=dist.device)
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
        return int(flag.item()) or None
