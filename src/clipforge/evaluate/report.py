"""Many result files as one report: ``report.md``, ``report.html`` and PNG plots in a folder.

The report is a list of blocks (headings, tables, images) rendered twice, as markdown and as
HTML, so the two always say the same: an overview of every result, then a section per task
present (docs/evaluation.md, "Report"). A file that is not a clipforge result, or whose metrics
lack what its task reports, is an error naming the file and the missing key. The plot functions
take plain numbers (already read and checked from result files or a training log) or images,
and write one PNG each (matplotlib figures made outside pyplot).
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..atomic import write_text_atomic
from .results import read_result

RETRIEVAL_KS = (1, 5, 10)
DIRECTIONS = {"image": "caption→image", "text": "image→caption"}  # metric key -> label


@dataclass(frozen=True)
class Result:
    """A result document and the file it came from (for labels and error messages)."""

    path: Path
    doc: dict[str, Any]

    @property
    def label(self) -> str:
        model = self.doc["model"]
        weights = Path(model["pretrained"]).name if model.get("pretrained") else None
        name = model.get("name")
        if name and weights:
            name = f"{name} ({weights})"
        return f"{name or weights or 'model'} on {self.doc['dataset']}"

    def metric(self, *keys: str, optional: bool = False, section: str = "metrics") -> Any:
        """``metrics[k1][k2]...`` (or another ``section``'s); a missing key is an error naming
        the file (or None when ``optional``)."""
        node: Any = self.doc.get(section, {})
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                if optional:
                    return None
                where = "".join(f"[{k!r}]" for k in keys[: depth + 1])
                raise ValueError(
                    f"result file {str(self.path)!r} ({self.doc['task']}) lacks {section}{where}"
                )
            node = node[key]
        return node


Block = tuple  # ("h2" | "h3", text) | ("table", header, rows) | ("img", caption, file)


def write_report(
    results: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    title: str | None = None,
    preface: Sequence[Block] = (),
) -> Path:
    """Read every result file (a folder stands for the ``*.json`` files in it), write the
    report into ``out_dir`` and return the path of ``report.md``. ``preface`` blocks (images
    already written into ``out_dir``) come before the sections of the results."""
    loaded = [Result(path, read_result(path)) for path in _expand(results)]
    if not loaded:
        raise ValueError("no result files to report on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks: list[Block] = [*preface, ("h2", "Results"), _overview(loaded)]
    for task, section in SECTIONS.items():
        chosen = [result for result in loaded if result.doc["task"] == task]
        if chosen:
            blocks += section(chosen, out)
    title = title or f"clipforge evaluation report ({len(loaded)} results)"
    write_text_atomic(out / "report.md", _markdown(title, blocks))
    write_text_atomic(out / "report.html", _html(title, blocks))
    return out / "report.md"


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    found = []
    for item in map(Path, paths):
        if item.is_dir():
            found += sorted(item.glob("*.json"))
        else:
            found.append(item)
    return found


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _table(rows: list[dict[str, str]]) -> Block:
    """A table whose header is the keys of its rows (each row names its cells, so a column's
    header and its values are written side by side)."""
    return ("table", list(rows[0]), [list(row.values()) for row in rows])


def _overview(results: list[Result]) -> Block:
    return _table(
        [
            {
                "file": r.path.name,
                "task": r.doc["task"],
                "dataset": r.doc["dataset"],
                "model": r.label,
                "created": r.doc["created"],
                "time (s)": num(r.doc.get("time"), 1),
            }
            for r in results
        ]
    )


# Classification columns shared by zero-shot and linear probe: header -> metric key.
LABEL_COLUMNS = {
    "acc@1 %": "acc1",
    "acc@5 %": "acc5",
    "mean per-class recall %": "mean_per_class_recall",
}


def _zeroshot(results: list[Result], out: Path) -> list[Block]:
    rows = []
    for r in results:
        row = {"model and data": r.label, **dict.fromkeys(LABEL_COLUMNS, ""), "mAP %": ""}
        if r.metric("accuracy", optional=True) is not None:  # caption selection
            row["acc@1 %"] = pct(r.metric("accuracy"))
        elif r.metric("mean_average_precision", optional=True) is not None:
            row["mAP %"] = pct(r.metric("mean_average_precision"))
        else:
            row.update({header: pct(r.metric(key)) for header, key in LABEL_COLUMNS.items()})
        rows.append(row)
    return [("h2", "Zero-shot classification"), _table(rows), *_confusions(results, out)]


def _confusions(results: list[Result], out: Path) -> list[Block]:
    """A confusion-matrix plot per result that holds one, named after the result file
    (``confusion_<stem>.png``; the file's position is added when two stems are equal)."""
    stems = [r.path.stem for r in results]
    blocks: list[Block] = []
    for index, r in enumerate(results):
        confusion = r.metric("confusion", section="details", optional=True)
        if confusion is None:
            continue
        stem = stems[index] if stems.count(stems[index]) == 1 else f"{stems[index]}_{index}"
        file = f"confusion_{stem}.png"
        plot_confusion(confusion["matrix"], confusion["classnames"], r.label, out / file)
        blocks.append(("img", f"Confusion matrix: {r.label}", file))
    return blocks


def _retrieval(results: list[Result], out: Path) -> list[Block]:
    rows, recalls = [], {}
    for r in results:
        recalls[r.label] = {
            f"{d}_retrieval_recall@{k}": r.metric(f"{d}_retrieval_recall@{k}")
            for d in DIRECTIONS
            for k in RETRIEVAL_KS
        }
        row = {"model and data": r.label}
        for d, arrow in DIRECTIONS.items():
            for k in RETRIEVAL_KS:
                row[f"{arrow} R@{k} %"] = pct(recalls[r.label][f"{d}_retrieval_recall@{k}"])
        for d, arrow in DIRECTIONS.items():
            row[f"{arrow} median rank"] = num(r.metric(f"{d}_retrieval_median_rank"), 1)
        rows.append(row)
    plot_recall_bars(recalls, RETRIEVAL_KS, out / "retrieval_recall.png")
    return [
        ("h2", "Retrieval"),
        _table(rows),
        ("img", "Retrieval recall@k", "retrieval_recall.png"),
    ]


def _linear_probe(results: list[Result], out: Path) -> list[Block]:
    rows = []
    for r in results:
        lam = r.metric("hparams", "lambda", section="details", optional=True)
        row = {"model and data": r.label}
        row.update({header: pct(r.metric(key)) for header, key in LABEL_COLUMNS.items()})
        rows.append({**row, "lambda": "–" if lam is None else f"{lam:.3g}"})
    return [("h2", "Linear probe"), _table(rows)]


def _fewshot(results: list[Result], out: Path) -> list[Block]:
    blocks: list[Block] = [("h2", "Few-shot adaptation")]
    for index, r in enumerate(results):
        methods = r.metric("fewshot")
        if not isinstance(methods, dict) or not methods:
            raise ValueError(f"result file {str(r.path)!r}: metrics['fewshot'] holds no method")
        curves = {
            method: {
                int(k): None if m is None else r.metric("fewshot", method, k, "acc1")
                for k, m in points.items()
            }
            for method, points in methods.items()
        }
        baselines = {"zero-shot": r.metric("zeroshot", "acc1")}
        restricted = r.metric("zeroshot_shot_classes", "acc1", optional=True)
        if restricted is not None:
            baselines["zero-shot, classes with shots"] = restricted
        shots = sorted({k for points in curves.values() for k in points})
        rows = [[name, *(pct(value) for _ in shots)] for name, value in baselines.items()]
        rows += [[method, *(pct(curves[method].get(k)) for k in shots)] for method in curves]
        file = f"fewshot_{index}.png"
        plot_shots(curves, baselines, r.label, out / file)
        blocks += [
            ("h3", r.label),
            ("table", ["top-1 accuracy %", *(f"k = {k}" for k in shots)], rows),
            ("img", f"Accuracy against shots: {r.label}", file),
        ]
    return blocks


def _robustness(results: list[Result], out: Path) -> list[Block]:
    rows: list[dict[str, str]] = []
    images: list[Block] = []
    for index, r in enumerate(results):
        scaling = r.metric("temperature_scaling")
        ood = r.metric("ood", optional=True) or {}
        rows.append(
            {
                "model and data": r.label,
                "acc@1 %": pct(r.metric("acc1")),
                "ECE %": pct(r.metric("ece")),
                "ECE after T %": pct(scaling.get("ece_after")),
                "NLL": num(r.metric("nll")),
                "NLL after T": num(scaling.get("nll_after")),
                "T": num(scaling.get("temperature")),
                "OOD AUROC %": pct(ood.get("auroc")),
                "FPR@95 %": pct(ood.get("fpr@95tpr")),
                "modality gap": num(r.metric("modality_gap")),
            }
        )
        diagrams = {"zero-shot": r.metric("reliability", section="details")}
        scaled = r.metric("reliability_scaled", section="details", optional=True)
        if scaled is not None:
            diagrams["after temperature scaling"] = scaled
        file = f"reliability_{index}.png"
        plot_reliability(diagrams, r.label, out / file)
        images.append(("img", f"Reliability diagram: {r.label}", file))
    return [("h2", "Calibration, OOD detection, modality gap"), _table(rows), *images]


SECTIONS = {
    "zeroshot": _zeroshot,
    "retrieval": _retrieval,
    "linear-probe": _linear_probe,
    "fewshot": _fewshot,
    "robustness": _robustness,
}


def _markdown(title: str, blocks: Sequence[Block]) -> str:
    lines = [f"# {title}"]
    for block in blocks:
        kind = block[0]
        if kind in ("h2", "h3"):
            lines += ["", f"{'#' * int(kind[1])} {block[1]}"]
        elif kind == "table":
            _, header, rows = block
            lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += [
                "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
            ]
        elif kind == "img":
            lines += ["", f"![{block[1]}]({block[2]})"]
    return "\n".join(lines) + "\n"


def _html(title: str, blocks: Sequence[Block]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h2", "h3"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "table":
            _, header, rows = block
            head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                for row in rows
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            caption = html.escape(block[1])
            parts.append(
                f"<figure><img src='{html.escape(block[2])}' alt='{caption}'>"
                f"<figcaption>{caption}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 10px;"
        "border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def _figure(figsize: tuple[float, float], *grid: int, **options: Any) -> tuple[Any, Any]:
    """A figure outside pyplot (no backend, no global state to close) and its axes, laid out
    tight when saved at 100 dpi."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="tight")
    return fig, fig.subplots(*grid, **options)


def plot_shots(
    curves: Mapping[str, Mapping[int, float | None]],
    baselines: Mapping[str, float],
    title: str,
    path: Path,
) -> None:
    """Top-1 accuracy (%) against shots (log2 axis), one line per method; each baseline
    (e.g. zero-shot) a dashed horizontal line. ``None`` points (a method not run at that k)
    are left out."""
    fig, ax = _figure((6, 4))
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
    fig.savefig(path)


def plot_reliability(
    diagrams: Mapping[str, Mapping[str, Sequence[float | None]]], title: str, path: Path
) -> None:
    """Reliability diagram: per bin, accuracy against mean confidence, one panel per entry of
    ``diagrams`` (e.g. before and after temperature scaling); empty bins are not drawn."""
    fig, axes = _figure((4.2 * len(diagrams), 4), 1, len(diagrams), squeeze=False)
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
    fig.savefig(path)


def plot_recall_bars(
    recalls: Mapping[str, Mapping[str, float]], ks: Sequence[int], path: Path
) -> None:
    """Grouped bars of recall@k (%), text-to-image and image-to-text, one group per result."""
    fig, axes = _figure((10, 4), 1, 2, sharey=True)
    labels = list(recalls)
    width = 0.8 / max(len(ks), 1)
    positions = np.arange(len(labels))
    for ax, (direction, title) in zip(axes, DIRECTIONS.items(), strict=True):
        for offset, k in enumerate(ks):
            values = [100 * recalls[label][f"{direction}_retrieval_recall@{k}"] for label in labels]
            ax.bar(positions + offset * width, values, width, label=f"R@{k}")
        ax.set_xticks(positions + width * (len(ks) - 1) / 2, labels, rotation=20, ha="right")
        ax.set(title=title, ylabel="recall (%)", ylim=(0, 100))
        ax.legend(fontsize=8)
    fig.savefig(path)


def plot_confusion(
    matrix: Sequence[Sequence[int]], classnames: Sequence[str], title: str, path: Path
) -> None:
    """Rows are true classes, columns predictions; the shade is the row's share, the number the
    count (empty cells stay blank so the off-diagonal mistakes stand out)."""
    counts = np.asarray(matrix)
    rates = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    fig, ax = _figure((5.5, 5))
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
    fig.savefig(path)


def plot_retrieval_examples(
    rows: Sequence[tuple[str, Sequence[Image.Image], Sequence[bool]]], path: Path
) -> None:
    """One row per query caption: its top images, best first, each framed green when the query
    is one of that image's captions and red otherwise."""
    columns = max(len(images) for _, images, _ in rows)
    fig, axes = _figure((1.5 * columns, 1.75 * len(rows)), len(rows), columns, squeeze=False)
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
    fig.set_layout_engine("none")  # titles above the rows, not a tight fit
    fig.subplots_adjust(left=0.02, right=0.98, top=0.95, bottom=0.02, hspace=0.35, wspace=0.08)
    fig.savefig(path)


def plot_training_curves(history: Sequence[Mapping[str, float]], path: Path) -> None:
    """Loss and learned temperature (``exp(logit_scale)``) against the step, from the rows of
    a training log (``log.jsonl``)."""
    steps = [row["step"] for row in history]
    fig, (left, right) = _figure((10, 3.5), 1, 2)
    left.plot(steps, [row["loss"] for row in history])
    left.set(title="training loss", xlabel="step", ylabel="loss")
    right.plot(steps, [row["logit_scale"] for row in history], color="tab:orange")
    right.set(title="temperature (logit scale)", xlabel="step", ylabel="exp(logit_scale)")
    fig.savefig(path)
