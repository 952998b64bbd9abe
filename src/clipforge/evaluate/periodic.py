"""The trainer's periodic evaluation: what ``run.eval_every`` measures, on any training data.

Zero-shot classification on ``run.eval_dataset`` (any dataset ``clipforge eval`` reads) when
one is named, else the shapes suite on shapes-world runs. The hooks are partials of module-level
functions, so they pickle and the workers of ``run.processes`` can run them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..models import CLIP
from .config import DataSection, EvalConfig, RunSection
from .run import run_eval
from .shapes_suite import shapes_eval_fn

EvalFn = Callable[[CLIP], dict[str, float]]


def periodic_eval_fn(eval_dataset: str, *, data_kind: str, seed: int) -> EvalFn | None:
    """The hook for a run: zero-shot on ``eval_dataset`` if given, the shapes suite on shapes
    data, else None (nothing to evaluate on)."""
    if eval_dataset:
        return partial(_zeroshot_figures, dataset=eval_dataset)
    return shapes_eval_fn(seed=seed) if data_kind == "shapes" else None


def _zeroshot_figures(model: CLIP, *, dataset: str) -> dict[str, float]:
    config = EvalConfig(
        task="zeroshot",
        dataset=dataset,
        model="model in training",
        data=DataSection(),
        run=RunSection(device=str(next(model.parameters()).device), progress=False),
    )
    metrics = run_eval(config, model)["metrics"]
    return {f"zeroshot_{key}": float(metrics[key]) for key in ("acc1", "acc5") if key in metrics}
