"""Who may write into a run folder, and which config changes a resume may bring.

A run folder belongs to one run. Training into a folder that holds another run would interleave
two logs and let checkpoint pruning delete the new run's files, so a new run starts only in an
empty folder, or over the old run when ``run.overwrite`` says so. A resume continues the run the
folder holds; it may change how the run is watched (steps, logging, checkpoint cadence) but not
what it computes (data order, optimisation, model, process count), which would make the resumed
run neither the old one nor a new one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..typed_config import flatten
from .config import TrainConfig, TrainConfigError

# What a run writes into its folder (the layout is in :mod:`.state`).
_RUN_ENTRIES = ("config.yaml", "log.jsonl", "checkpoints", "tensorboard")
# Keys a resume may change: they decide how long the run goes on and how it is watched, not
# which batches it sees or how it updates the weights.
_WATCHING_KEYS = {
    "run.steps", "run.log_every", "run.checkpoint_every", "run.keep_last", "run.eval_every",
    "run.tensorboard", "run.progress", "run.out_dir", "run.overwrite", "run.device",
    "run.eval_dataset",
}  # fmt: skip


class RunFolderError(TrainConfigError):
    """A run folder holds another run, or a resume would change what the run computes."""


def claim_run_folder(run_dir: Path, *, resume: str | None, overwrite: bool) -> None:
    """Make ``run_dir`` ready for this run: a resume continues what is there; a new run needs
    a folder without another run in it, or ``overwrite`` to remove that run's files first."""
    if resume:
        return
    held = [name for name in _RUN_ENTRIES if (run_dir / name).exists()]
    if not held:
        return
    if not overwrite:
        raise RunFolderError(
            f"run.out_dir {str(run_dir)!r} holds another run ({', '.join(held)}); continue it "
            "with --resume latest, replace it with --set run.overwrite=true, or choose another "
            "run.out_dir"
        )
    for name in held:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resume_changes(saved: dict[str, Any] | None, cfg: TrainConfig, world_size: int) -> dict:
    """The keys ``cfg`` changes against the run's saved config, ``{key: [old, new]}``.

    Raises :class:`RunFolderError` naming every key whose change would alter the data order
    or the optimisation; returns the harmless changes for the log. ``saved`` is what
    :func:`run_record` stored in the checkpoint (None for checkpoints from before it).
    """
    if saved is None:
        return {}
    old = flatten({**saved["config"], "world_size": saved["world_size"]})
    new = flatten({**cfg.to_dict(), "world_size": world_size})
    changed = {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys())
               if old.get(k) != new.get(k)}  # fmt: skip
    harmless = _WATCHING_KEYS | ({"data.workers"} if cfg.data.kind == "shapes" else set())
    refused = {k: v for k, v in changed.items() if k not in harmless}
    if refused:
        listed = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in refused.items())
        raise RunFolderError(
            f"--resume would change what the run computes: {listed}. Resume with the run's "
            "config (its config.yaml), or start a new run in another run.out_dir"
        )
    return changed


def run_record(cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """What a checkpoint keeps of the run, for :func:`resume_changes` to compare against."""
    return {"config": cfg.to_dict(), "world_size": world_size}
