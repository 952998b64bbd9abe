"""The demo's report: evaluate's report of the suite's results, headed by the demo's figures,
its training curves and a grid of retrieval examples; plus ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.evalsets import open_evalset
from ..evaluate import EvalConfig, write_report
from ..evaluate.report_plots import plot_retrieval_examples, plot_training_curves

LABELS = {
    "zeroshot_shape_acc": "Zero-shot shape accuracy (val, 8 classes)",
    "zeroshot_colour_acc": "Zero-shot colour accuracy (val, 10 classes)",
    "heldout_pair_acc": "Held-out colour-shape pairs (which of 80 captions)",
    "retrieval_text_to_image_recall@5": "Caption → image recall@5 (val)",
    "retrieval_text_to_image_recall@1": "Caption → image recall@1 (val)",
    "word_order_acc": "Word-order probe (chance 50%)",
}
RETRIEVAL_CAPTION = "Caption → top-5 images (green: same caption)"


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
