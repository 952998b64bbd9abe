"""The main job end to end: generate the shapes world, train, evaluate, write the report.

The report is evaluate's report of the suite's results, headed by the demo's figures, its
training curves and a grid of retrieval examples; ``metrics.json`` holds the figures."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..data.evalsets import open_evalset
from ..evaluate import EvalConfig, write_report
from ..evaluate.report import plot_retrieval_examples, plot_training_curves
from ..evaluate.shapes_suite import SuiteSizes, run_suite, suite_configs, suite_figures
from ..recipes import recipe_path
from ..train import fit, load_train_config
from ..version import __version__

log = logging.getLogger(__name__)

# --quick: the same pipeline, small enough to finish within a minute (for tests and a first
# look): 140 steps of 128 (64 in each of the recipe's two processes). Those few steps end
# before a model starting at the recipe's sharp temperature learns colour, so it starts at
# CLIP's (docs/benchmarks.md, "The demo").
QUICK_OVERRIDES = ["run.steps=140", "data.num_samples=4096", "data.batch_size=64",
                   "optim.warmup_steps=10", "run.checkpoint_every=70",
                   "model.init_temperature=0"]  # fmt: skip
QUICK_EVAL = SuiteSizes(classification=200, heldout=160, retrieval=200, probe=100)

LABELS = {
    "zeroshot_shape_acc": "Zero-shot shape accuracy (val, 8 classes)",
    "zeroshot_colour_acc": "Zero-shot colour accuracy (val, 10 classes)",
    "heldout_pair_acc": "Held-out colour-shape pairs (which of 80 captions)",
    "retrieval_text_to_image_recall@5": "Caption → image recall@5 (val)",
    "retrieval_text_to_image_recall@1": "Caption → image recall@1 (val)",
    "word_order_acc": "Word-order probe (chance 50%)",
}
RETRIEVAL_CAPTION = "Caption → top-5 images (green: same caption)"


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
    model, history, results_dir = result.model, result.history, out_dir / "results"
    sizes = QUICK_EVAL if quick else SuiteSizes()
    configs = suite_configs(
        model, cfg.model.name, seed=cfg.run.seed, sizes=sizes, out_dir=results_dir
    )
    results = run_suite(model, configs)
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


def write_demo_report(
    out_dir: Path,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    results_dir: Path,
    retrieval: tuple[EvalConfig, dict[str, Any]],
) -> Path:
    """Write ``metrics.json``, the plots and ``report.md``/``.html`` into ``out_dir``; the
    result files of the suite are in ``results_dir``, ``retrieval`` is the retrieval run's
    config and result (whose examples the grid shows). Returns the path of ``report.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_training_curves(history, out_dir / "curves.png")
    plot_retrieval_examples(_retrieval_rows(*retrieval), out_dir / "retrieval.png")
    rows = [[LABELS[k], f"{100 * metrics['eval'][k]:.1f}%"] for k in LABELS if k in metrics["eval"]]
    train = metrics["training"]
    rows += [
        ["Training steps × batch", f"{train['steps']} × {train['batch_size']}"],
        ["Training throughput", f"{train['samples_per_second']:.0f} samples/s"],
        ["Final training loss", f"{train['final_loss']:.3f}"],
        ["Wall time (whole demo)", f"{metrics['wall_time_s']:.0f} s"],
    ]
    preface = [
        ("table", ["figure", "value"], rows),
        ("h2", "Loss and temperature"),
        ("img", "Loss and temperature", "curves.png"),
        ("h2", RETRIEVAL_CAPTION),
        ("img", RETRIEVAL_CAPTION, "retrieval.png"),
    ]
    title = f"clipforge demo: {metrics['model']} trained on the shapes world"
    return write_report([results_dir], out_dir, title=title, preface=preface)


def _retrieval_rows(config: EvalConfig, result: dict[str, Any]) -> list[tuple[str, list, list]]:
    """``(caption, top images, whether each image has that caption)`` per example query."""
    dataset = open_evalset(config.dataset, config.split, None, config.data.options)
    rows = []
    for example in result["details"]["examples"]:
        loaded = [dataset.load(index) for index in example["top"]]
        images = [image for image, _ in loaded]
        matches = [example["caption"] in captions for _, captions in loaded]
        rows.append((example["caption"], images, matches))
    return rows
