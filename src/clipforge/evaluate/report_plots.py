"""The report's PNG plots: accuracy against shots, reliability diagrams, retrieval recall bars.

Each function takes plain numbers (already read and checked from result files) and writes one
PNG with matplotlib's file-only backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reliability(
    diagrams: Mapping[str, Mapping[str, Sequence[float | None]]], title: str, path: Path
) -> None:
    """Reliability diagram: per bin, accuracy against mean confidence, one panel per entry of
    ``diagrams`` (e.g. before and after temperature scaling); empty bins are not drawn."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(diagrams), figsize=(4.2 * len(diagrams), 4), squeeze=False)
    for ax, (label, bins) in zip(axes[0], diagrams.items(), strict=True):
        lower = np.asarray(bins["lower"], dtype=float)
        width = np.asarray(bins["upper"], dtype=float) - lower
        filled = np.asarray(bins["count"]) > 0
        accuracy = np.array([np.nan if v is None else v for v in bins["accuracy"]], dtype=float)
        confidence = np.array([np.nan if v is None else v for v in bins["confidence"]], dtype=float)
        ax.bar(
            lower[filled],
            accuracy[filled],
            width[filled],
            align="edge",
            edgecolor="black",
            label="accuracy",
        )
        ax.bar(
            lower[filled],
            confidence[filled] - accuracy[filled],
            width[filled],
            bottom=accuracy[filled],
            align="edge",
            color="tab:red",
            alpha=0.3,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--")
        ax.set(title=label, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
