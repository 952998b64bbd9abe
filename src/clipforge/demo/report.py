"""The demo's report: ``metrics.json``, ``report.md``, ``report.html`` and PNG plots."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import ShapesEval

LABELS = {
    "zeroshot_shape_acc": "Zero-shot shape accuracy (val, 8 classes)",
    "zeroshot_colour_acc": "Zero-shot colour accuracy (val, 10 classes)",
    "heldout_pair_acc": "Held-out colour-shape pairs (which of 80 captions)",
    "retrieval_text_to_image_recall@5": "Caption → image recall@5 (val)",
    "retrieval_text_to_image_recall@1": "Caption → image recall@1 (val)",
    "word_order_acc": "Word-order probe (chance 50%)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    steps = [h["step"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(steps, [h["loss"] for h in history])
    left.set(title="training loss", xlabel="step", ylabel="loss")
    right.plot(steps, [h["logit_scale"] for h in history], color="tab:orange")
    right.set(title="temperature (logit scale)", xlabel="step", ylabel="exp(logit_scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, classnames: list[str], title: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    rates = matrix / np.maximum(1, matrix.sum(axis=1, keepdims=True))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classnames))
    ax.set_xticks(ticks, classnames, rotation=60, ha="right")
    ax.set_yticks(ticks, classnames)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    for i in ticks:
        for j in ticks:
            if matrix[i, j]:
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_retrieval(examples, path: Path) -> None:
    """One row per query caption, its top-5 images; a green frame marks a matching caption."""
    plt = _pyplot()
    rows = len(examples)
    fig, axes = plt.subplots(rows, 5, figsize=(7.5, 1.75 * rows), squeeze=False)
    for row, (caption, images, matches) in enumerate(examples):
        for col, (image, match) in enumerate(zip(images, matches, strict=True)):
            ax = axes[row][col]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("tab:green" if match else "tab:red")
                spine.set_linewidth(3)
        short = caption if len(caption) <= 80 else caption[:77] + "..."
        axes[row][0].set_title(f"“{short}”", loc="left", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.95, bottom=0.02, hspace=0.35, wspace=0.08)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    out_dir: Path, metrics: dict[str, Any], history: list[dict], evaluation: ShapesEval
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_curves(history, out_dir / "curves.png")
    for task in ("shape", "colour"):
        plot_confusion(evaluation.confusion[task], evaluation.classnames[task],
                       f"zero-shot {task} (val)", out_dir / f"confusion_{task}.png")  # fmt: skip
    plot_retrieval(evaluation.retrieval_examples, out_dir / "retrieval.png")

    rows = [(LABELS[k], f"{100 * metrics['eval'][k]:.1f}%") for k in LABELS if k in metrics["eval"]]
    train = metrics["training"]
    rows += [
        ("Training steps × batch", f"{train['steps']} × {train['batch_size']}"),
        ("Training throughput", f"{train['samples_per_second']:.0f} samples/s"),
        ("Final training loss", f"{train['final_loss']:.3f}"),
        ("Wall time (whole demo)", f"{metrics['wall_time_s']:.0f} s"),
    ]
    images = [("Loss and temperature", "curves.png"), ("Zero-shot shape", "confusion_shape.png"),
              ("Zero-shot colour", "confusion_colour.png"),
              ("Caption → top-5 images (green: same caption)", "retrieval.png")]  # fmt: skip
    title = f"clipforge demo: {metrics['model']} trained on the shapes world"
    md = [f"# {title}", "", "| figure | value |", "|---|---|"]
    md += [f"| {name} | {value} |" for name, value in rows]
    for caption, file in images:
        md += ["", f"## {caption}", "", f"![{caption}]({file})"]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")

    body = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(v)}</td></tr>" for n, v in rows)
    figures = "".join(
        f"<h2>{html.escape(c)}</h2><img src='{f}' alt='{html.escape(c)}'>" for c, f in images
    )
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
            "td{padding:4px 12px;border-bottom:1px solid #ddd}img{max-width:100%}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><table>{body}</table>{figures}</body></html>")  # fmt: skip
    (out_dir / "report.html").write_text(page)
