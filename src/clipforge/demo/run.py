"""The main job end to end: generate the shapes world, train, evaluate, write the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..evaluate.shapes_suite import SuiteSizes, run_suite, suite_configs, suite_figures
from ..recipes import recipe_path
from ..train import fit, load_train_config
from ..version import __version__
from .report import write_demo_report

log = logging.getLogger(__name__)

# --quick: the same pipeline, small enough to finish within a minute (for tests and a first
# look): 140 steps of 128 (64 in each of the recipe's two processes). Those few steps end
# before a model starting at the recipe's sharp temperature learns colour, so it starts at
# CLIP's (docs/benchmarks.md, "The demo").
QUICK_OVERRIDES = ["run.steps=140", "data.num_samples=4096", "data.batch_size=64",
                   "optim.warmup_steps=10", "run.checkpoint_every=70",
                   "model.init_temperature=0"]  # fmt: skip
QUICK_EVAL = SuiteSizes(classification=200, heldout=160, retrieval=200, probe=100)


def run_demo(
    out_dir: str | Path = "runs/demo",
    *,
    quick: bool = False,
    overrides: list[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate; write ``metrics.json``, ``report.md``/``.html``, plots and the
    evaluation result files (``results/*.json``) to ``out_dir``."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    sets = [f"run.out_dir={out_dir}", f"run.progress={str(progress).lower()}"]
    sets += (QUICK_OVERRIDES if quick else []) + list(overrides)
    cfg = load_train_config(recipe_path("shapes-demo"), sets)
    result = fit(cfg)
    model = result.model
    sizes = QUICK_EVAL if quick else SuiteSizes()
    results_dir = out_dir / "results"
    configs = suite_configs(
        model, cfg.model.name, seed=cfg.run.seed, sizes=sizes, out_dir=results_dir
    )
    results = run_suite(model, configs)
    history = result.history
    batch_size = cfg.data.batch_size * cfg.run.processes  # data.batch_size is per process
    metrics = {
        "model": cfg.model.name,
        "quick": quick,
        "clipforge_version": __version__,
        "eval": suite_figures(results),
        "training": {
            "steps": result.step,
            "batch_size": batch_size,
            "processes": cfg.run.processes,
            "samples": result.step * batch_size,
            "samples_per_second": result.samples_per_second,
            "final_loss": history[-1]["loss"] if history else float("nan"),
            "precision": cfg.run.precision,
        },
        "wall_time_s": time.perf_counter() - start,
    }
    report = write_demo_report(
        out_dir, metrics, history, results_dir, (configs["retrieval"], results["retrieval"])
    )
    log.info("demo report written to %s", report)
    return metrics
