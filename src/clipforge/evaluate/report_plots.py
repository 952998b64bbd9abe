"""The report's PNG plots. Each function takes plain numbers (already read and checked from
result files or a training log) or images, and writes one PNG with matplotlib's file-only
backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, *, tight: bool = True) -> None:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


def plot_shots(
    curves: Mapping[str, Mapping[int, float | None]],
    baselines: Mapping[str, float],
    title: str,
    path: Path,
) -> None:
    """Top-1 accuracy (%) against shots (log2 axis), one line per method; each baseline
    (e.g. zero-shot) a dashed horizontal line. ``None`` points (a method not run at that k)
    are left out."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, points in curves.items():
        shots = sorted(k for k, v in points.items() if v is not None)
        ax.plot(shots, [100 * points[k] for k in shots], marker="o", label=method)
    for (label, value), style in zip(baselines.items(), ("--", ":", "-."), strict=False):
        ax.axhline(100 * value, color="grey", linestyle=style, label=label)
    ax.set_xscale("log", base=2)
    every = sorted({k for points in curves.values() for k in points})
    ax.set_xticks(every, [str(k) for k in every])
    ax.set(title=title, xlabel="shots per class", ylabel="top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_reliability(
    diagrams: Mapping[str, Mapping[str, Sequence[float | None]]], title: str, path: Path
) -> None:
    """Reliability diagram: per bin, accuracy against mean confidence, one panel per entry of
    ``diagrams`` (e.g. before and after temperature scaling); empty bins are not drawn."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(diagrams), figsize=(4.2 * len(diagrams), 4), squeeze=False)
    for ax, (label, bins) in zip(axes[0], diagrams.items(), strict=True):
        filled = np.asarray(bins["count"]) > 0
        lower, upper, accuracy, confidence = (
            np.asarray(bins[key], dtype=float)[filled]  # an empty bin's None becomes NaN
            for key in ("lower", "upper", "accuracy", "confidence")
        )
        width = upper - lower
        ax.bar(lower, accuracy, width, align="edge", edgecolor="black", label="accuracy")
        ax.bar(
            lower,
            confidence - accuracy,
            width,
            bottom=accuracy,
            align="edge",
            color="tab:red",
            alpha=0.3,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
        ax.set(title=label, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    _save(fig, path)


def plot_recall_bars(
    recalls: Mapping[str, Mapping[str, float]], ks: Sequence[int], path: Path
) -> None:
    """Grouped bars of recall@k (%), text-to-image and image-to-text, one group per result."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    labels = list(recalls)
    width = 0.8 / max(len(ks), 1)
    positions = np.arange(len(labels))
    for ax, (direction, title) in zip(
        axes, (("image", "caption → image"), ("text", "image → caption")), strict=True
    ):
        for offset, k in enumerate(ks):
            values = [100 * recalls[label][f"{direction}_retrieval_recall@{k}"] for label in labels]
            ax.bar(positions + offset * width, values, width, label=f"R@{k}")
        ax.set_xticks(positions + width * (len(ks) - 1) / 2, labels, rotation=20, ha="right")
        ax.set(title=title, ylabel="recall (%)", ylim=(0, 100))
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], classnames: Sequence[str], title: str, path: Path
) -> None:
    """Rows are true classes, columns predictions; the shade is the row's share, the number the
    count (empty cells stay blank so the off-diagonal mistakes stand out)."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    rates = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classnames))
    ax.set_xticks(ticks, classnames, rotation=60, ha="right")
    ax.set_yticks(ticks, classnames)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    for i in ticks:
        for j in ticks:
            if counts[i, j]:
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=colour)
    _save(fig, path)


def plot_retrieval_examples(
    rows: Sequence[tuple[str, Sequence[Image.Image], Sequence[bool]]], path: Path
) -> None:
    """One row per query caption: its top images, best first, each framed green when the query
    is one of that image's captions and red otherwise."""
    plt = _pyplot()
    columns = max(len(images) for _, images, _ in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.5 * columns, 1.75 * len(rows)), squeeze=False
    )
    for row, (caption, images, matches) in enumerate(rows):
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax, image, match in zip(axes[row], images, matches, strict=False):
            ax.imshow(image)
            for spine in ax.spines.values():
                spine.set_color("tab:green" if match else "tab:red")
                spine.set_linewidth(3)
        short = caption if len(caption) <= 80 else caption[:77] + "..."
        axes[row][0].set_title(f"“{short}”", loc="left", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.95, bottom=0.02, hspace=0.35, wspace=0.08)
    _save(fig, path, tight=False)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """Loss and learned temperature (``exp(logit_scale)``) against the step, from the rows of
    a training log (``log.jsonl``)."""
    plt = _pyplot()
    steps = [row["step"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot(steps, [row["loss"] for row in history])
    left.set(title="training loss", xlabel="step", ylabel="loss")
    right.plot(steps, [row["logit_scale"] for row in history], color="tab:orange")
    right.set(title="temperature (logit scale)", xlabel="step", ylabel="exp(logit_scale)")
    _save(fig, path)
