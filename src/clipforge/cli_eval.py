"""``clipforge eval`` and ``clipforge report``: parse the flags, build an ``EvalConfig``, call.

Values are checked by the library (``EvalConfig`` names the option and the value in its
errors), so an unknown task or method, a misplaced option or a bad shot count is one line and
exit code 1 through ``clipforge.cli.main``, as every other input error is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def _ints(text: str, option: str) -> tuple[int, ...]:
    """``"1,2,4"`` as ``(1, 2, 4)``; anything else is an error naming the option."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not re.fullmatch(r"[0-9]+", part) or int(part) < 1:
            raise ValueError(f"{option}: {part!r} is not a positive integer (in {text!r})")
        values.append(int(part))
    return tuple(values)


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())


def default_out(task: str, dataset: str, model: str | None, pretrained: str | None) -> Path:
    """``results/<task>-<dataset>-<model>.json`` with unsafe characters replaced."""
    label = Path(pretrained).stem if pretrained else str(model)
    parts = (task, dataset.strip("/"), label)
    return Path("results") / ("-".join(_SLUG.sub("_", part) for part in parts) + ".json")


def _flat(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flat(value, f"{name}/")
        else:
            rows.append((name, value))
    return rows


def eval_command(
    task: Annotated[
        str, typer.Option(help="zeroshot, retrieval, linear-probe, fewshot or robustness.")
    ],
    dataset: Annotated[str, typer.Option(help="Registry name (shapes/heldout) or path.")],
    model: Annotated[
        str | None, typer.Option(help="Model name, config JSON or checkpoint.")
    ] = None,
    pretrained: Annotated[str | None, typer.Option(help="Weights file to load into MODEL.")] = None,
    split: Annotated[str | None, typer.Option(help="Test split, NAME or NAME[START:STOP].")] = None,
    train_split: Annotated[
        str | None, typer.Option(help="Train split (linear-probe, fewshot).")
    ] = None,
    val_split: Annotated[
        str | None, typer.Option(help="Val split (linear-probe, fewshot, robustness).")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="Few-shot methods: tip,tip-f,gda,coop,linear (default: all).")
    ] = None,
    shots: Annotated[str | None, typer.Option(help="Few-shot counts, e.g. 1,2,4,8,16.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the k-shot draw and of training.")] = 0,
    templates: Annotated[str | None, typer.Option(help="Template file or packaged name.")] = None,
    classnames: Annotated[str | None, typer.Option(help="Class-name file (one per line).")] = None,
    descriptors: Annotated[str | None, typer.Option(help="DCLIP descriptor JSON.")] = None,
    cupl: Annotated[str | None, typer.Option(help="CuPL prompt JSON.")] = None,
    waffle: Annotated[bool, typer.Option(help="WaffleCLIP random descriptors.")] = False,
    language: Annotated[str, typer.Option(help="Language of templates and class names.")] = "en",
    ood_dataset: Annotated[str | None, typer.Option(help="OOD set for robustness (MCM).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 256,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 (default: CUDA if any).")
    ] = None,
    precision: Annotated[str, typer.Option(help="fp32, bf16, fp16, amp or amp_bf16.")] = "fp32",
    out: Annotated[
        Path | None, typer.Option(help="Result JSON (default results/TASK-DATASET-MODEL.json).")
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Feature cache folder (default: the user cache).")
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Encode without reading or writing the cache.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Evaluate a model on one task and write its result as JSON."""
    from .evaluate import EvalConfig, default_cache_dir, run_eval

    if no_cache and cache_dir is not None:
        raise ValueError("--no-cache and --cache-dir contradict each other; give one")
    cache = None if no_cache else (cache_dir or default_cache_dir())
    target = out or default_out(task, dataset, model, pretrained)
    config = EvalConfig(
        task=task,
        dataset=dataset,
        model=model,
        pretrained=pretrained,
        split=split,
        train_split=train_split,
        val_split=val_split,
        methods=_names(method),
        shots=None if shots is None else _ints(shots, "--shots"),
        seed=seed,
        templates=templates,
        classnames=classnames,
        descriptors=descriptors,
        cupl=cupl,
        waffle=waffle,
        language=language,
        ood_dataset=ood_dataset,
        batch_size=batch_size,
        workers=workers,
        device=device,
        precision=precision,
        cache_dir=None if cache is None else str(cache),
        progress=progress,
        out=str(target),
    )
    result = run_eval(config)
    table = Table("metric", "value", title=f"{task} on {dataset}")
    for name, value in _flat(result["metrics"]):
        table.add_row(name, "–" if value is None else f"{value:.4f}")
    console.print(table)
    console.print(f"wrote {target} ({result['time']:.1f} s)")


def report_command(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files or folders of them.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("report"),
) -> None:
    """Render result files as markdown + HTML tables and PNG plots."""
    from .evaluate import write_report

    path = write_report(results, out)
    console.print(f"report: {path} (and {path.with_suffix('.html').name})")


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``report`` to the ``clipforge`` command."""
    app.command("eval")(eval_command)
    app.command("report")(report_command)
