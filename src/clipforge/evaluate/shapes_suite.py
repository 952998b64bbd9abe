"""The shapes-world suite: the demo's figures as five ordinary evaluation runs of an in-memory
model (docs/evaluation.md), and the trainer's periodic-evaluation hook built on them.

Each run's result is an ordinary result document, so ``clipforge report`` renders the suite
like any other; :data:`FIGURES` names the number each figure is read from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..data.evalsets import EvalOptions
from ..models import CLIP
from .config import DataSection, EvalConfig, RunSection
from .run import build_encoder, run_eval

# run name -> (task, evaluation set, the figures read from its metrics: figure -> metric key)
FIGURES: dict[str, tuple[str, str, dict[str, str]]] = {
    "shape": ("zeroshot", "shapes/shape", {"zeroshot_shape_acc": "acc1"}),
    "colour": ("zeroshot", "shapes/colour", {"zeroshot_colour_acc": "acc1"}),
    "heldout": ("zeroshot", "shapes/heldout", {"heldout_pair_acc": "acc1"}),
    "retrieval": (
        "retrieval",
        "shapes/retrieval",
        {
            "retrieval_text_to_image_recall@5": "image_retrieval_recall@5",
            "retrieval_text_to_image_recall@1": "image_retrieval_recall@1",
        },
    ),
    "word-order": ("zeroshot", "shapes/word-order", {"word_order_acc": "accuracy"}),
}
# Retrieval is scored against the one canonical caption of each scene: a templated caption
# may leave colour or size out, and would then describe many images equally well.
_CAPTIONS = {"retrieval": ("canonical",)}


@dataclass(frozen=True)
class SuiteSizes:
    """Images per run; None takes the view's default size (1000 for shape, colour and
    retrieval, 800 held-out pairs, 500 probe items)."""

    classification: int | None = None  # shape and colour each
    heldout: int | None = None
    retrieval: int | None = None
    probe: int | None = None

    def of(self, run: str) -> int | None:
        field = {"shape": "classification", "colour": "classification", "word-order": "probe"}
        return getattr(self, field.get(run, run))


# Small enough to run every few hundred steps without slowing training much.
PERIODIC_SIZES = SuiteSizes(classification=300, heldout=160, retrieval=300, probe=100)


def suite_configs(
    model: CLIP,
    model_name: str,
    *,
    seed: int,
    sizes: SuiteSizes = SuiteSizes(),
    out_dir: str | os.PathLike | None = None,
) -> dict[str, EvalConfig]:
    """One config per run of the suite on the shapes world of ``seed``, drawn at the model's
    image size and evaluated where the model lies (``model_name`` labels the results); with
    ``out_dir`` each run writes ``<out_dir>/<run>.json``."""
    device = str(next(model.parameters()).device)
    configs = {}
    for run, (task, dataset, _) in FIGURES.items():
        options = EvalOptions(
            size=sizes.of(run), image_size=model.image_size, seed=seed, captions=_CAPTIONS.get(run)
        )
        configs[run] = EvalConfig(
            task=task,
            dataset=dataset,
            model=model_name,
            data=DataSection(options=options),
            run=RunSection(device=device, progress=False),
            out=None if out_dir is None else str(Path(out_dir) / f"{run}.json"),
        )
    return configs


def run_suite(model: CLIP, configs: dict[str, EvalConfig]) -> dict[str, dict[str, Any]]:
    """Evaluate the in-memory ``model`` on every run of ``configs`` (see
    :func:`suite_configs`, whose runs share one encoder: the weights are hashed once); returns
    the result documents by run name. The model's train/eval mode is left as it was (the
    encoder restores it), so the trainer can call this between steps."""
    encoder = build_encoder(next(iter(configs.values())), model)
    return {run: run_eval(config, encoder=encoder) for run, config in configs.items()}


def suite_figures(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The demo's figures (``zeroshot_shape_acc``, ...) read from the suite's results."""
    return {
        figure: float(results[run]["metrics"][key])
        for run, (_, _, figures) in FIGURES.items()
        for figure, key in figures.items()
    }


def shapes_eval_fn(
    seed: int, sizes: SuiteSizes = PERIODIC_SIZES
) -> Callable[[CLIP], dict[str, float]]:
    """The trainer's periodic-evaluation hook: the suite's figures for a model. A partial of a
    module-level function, so it pickles and ``run.processes`` workers can run it."""
    return partial(_figures_of, seed=seed, sizes=sizes)


def _figures_of(model: CLIP, *, seed: int, sizes: SuiteSizes) -> dict[str, float]:
    configs = suite_configs(model, "model in training", seed=seed, sizes=sizes)
    return suite_figures(run_suite(model, configs))
