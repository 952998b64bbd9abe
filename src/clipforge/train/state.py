"""A run's training state, saved and loaded whole, written so that a crash never leaves a
checkpoint that looks complete but is not.

Layout of a run directory::

    config.yaml
    checkpoints/step_N.safetensors    weights (config in the metadata; loads with create_model)
    checkpoints/step_N.state.pt       optimiser, scaler, RNG states, step
    checkpoints/latest                "step_N", replaced atomically after both files are complete
    log.jsonl

Each file is written to a temporary name, fsynced, then renamed; ``latest`` moves last. A run
killed mid-write therefore resumes from the previous complete checkpoint.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path, write_text_atomic
from ..models import CheckpointError, load_weights, read_checkpoint, save_model

log = logging.getLogger(__name__)
_STEP_FILE = re.compile(r"step_(\d+)\.safetensors$")


@dataclass
class TrainState:
    """Everything a run changes as it trains, so everything a resume must restore.

    The data position is ``step`` itself: each step's batch is a pure function of the step
    (:mod:`.batches`). The RNG states are the process's own (dropout, patch dropout draw from
    them), saved with the rest.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None
    step: int = 0

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights, which go to their own safetensors file."""
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        self.step = int(state["step"])


def save_checkpoint(
    run_dir: Path, state: TrainState, *, keep_last: int = 2, record: dict[str, Any] | None = None
) -> Path:
    """Write checkpoint ``state.step`` and point ``latest`` at it; keep the last ``keep_last``.

    ``record`` is what the run keeps for a resume to check against (its config); it is saved
    with the training state.
    """
    directory = run_dir / "checkpoints"
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"step_{state.step}.safetensors"
    save_model(state.model, weights)  # writes a temporary file and renames it
    with atomic_path(directory / f"step_{state.step}.state.pt") as tmp:
        torch.save({**state.state_dict(), "run": record}, tmp)
    write_text_atomic(directory / "latest", f"step_{state.step}\n")
    _prune(directory, keep_last, state.step)
    return weights


def _prune(directory: Path, keep_last: int, current: int) -> None:
    """Remove all but the last ``keep_last`` checkpoints up to ``current``, which always stays.
    Later steps (left by a run resumed from an earlier checkpoint) are not this line's to prune."""
    steps = sorted(int(m.group(1)) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name)))
    for step in [s for s in steps if s <= current][:-keep_last]:
        for suffix in (".safetensors", ".state.pt"):
            (directory / f"step_{step}{suffix}").unlink(missing_ok=True)


def resolve_resume(run_dir: Path, resume: str) -> Path:
    """The weights file to resume from: ``latest`` in ``run_dir``, or a given checkpoint file."""
    if resume != "latest":
        path = Path(resume)
        if not path.is_file():
            raise CheckpointError(f"resume checkpoint {resume!r} does not exist")
        return path
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        raise CheckpointError(
            f"no checkpoint to resume in {str(run_dir)!r} (no checkpoints/latest)"
        )
    name = pointer.read_text().strip()
    path = pointer.parent / f"{name}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{pointer} points at {name}, whose weights are missing")
    return path


def load_checkpoint(weights: Path, state: TrainState) -> dict[str, Any] | None:
    """Restore ``state`` (weights, optimiser, scaler, RNG, step) from checkpoint ``weights``;
    return the run record saved with it (None for checkpoints written without one)."""
    state_path = weights.with_name(weights.name.replace(".safetensors", ".state.pt"))
    if not state_path.is_file():
        raise CheckpointError(f"{weights}: its training state {state_path.name} is missing")
    load_weights(state.model, read_checkpoint(weights))
    try:
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise CheckpointError(f"{state_path}: cannot read training state ({err})") from None
    state.load_state_dict(saved)
    log.info("resumed from %s at step %d", weights, state.step)
    return saved.get("run")


def read_run_record(weights: Path) -> tuple[int, dict[str, Any] | None] | None:
    """``(step, run record)`` of a run's checkpoint ``weights`` (``step_N.safetensors`` beside
    its training state), None for any other weights file. The state is memory-mapped, so the
    optimiser moments in it are not read."""
    match = _STEP_FILE.match(weights.name)
    state_path = weights.with_name(weights.name.replace(".safetensors", ".state.pt"))
    if match is None or not state_path.is_file():
        return None
    try:
        saved = torch.load(state_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises several types for a corrupt file
        raise CheckpointError(f"{state_path}: cannot read training state ({err})") from None
    return int(match.group(1)), saved.get("run")
