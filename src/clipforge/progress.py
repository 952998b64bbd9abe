"""The one progress bar: training steps and encoded samples, on stderr, look alike.

It redraws when it moves, not on rich's 10 Hz timer: that timer's thread takes CPU time from
the core it shares with a training process (``docs/benchmarks.md``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(
    label: str, total: int | None, *, enabled: bool, start: int = 0
) -> Iterator[Callable[[int, str], None]]:
    """A bar from ``start`` to ``total`` (None: an open-ended counter), silent when not
    ``enabled``; yields ``update(completed, status)``, the status shown after the count."""
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        auto_refresh=False,
    )
    task = bar.add_task(label, total=total, completed=start, status="")
    with bar:
        yield lambda completed, status: bar.update(
            task, completed=completed, status=status, refresh=True
        )
