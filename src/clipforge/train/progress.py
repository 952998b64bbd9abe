"""A rich progress bar for training: steps, samples/s, loss, learning rate, temperature.

It redraws once per step, not on rich's 10 Hz timer: that timer's thread takes CPU time from
the core it shares with a training process (``docs/benchmarks.md``)."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainProgress:
    """Shows progress when ``enabled`` (the main rank, a terminal or a log); otherwise silent."""

    def __init__(self, total: int, *, start: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(),
            disable=not enabled,
            auto_refresh=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=start, status="")

    def __enter__(self) -> TrainProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        status = (
            f"loss {metrics['loss']:.3f}  lr {metrics['lr']:.2e}  "
            f"T {metrics['logit_scale']:.1f}  {metrics['samples_per_s']:.0f} samples/s"
        )
        self._progress.update(self._task, completed=step, status=status, refresh=True)
