"""``clipforge eval`` and ``clipforge report``: an ``EvalConfig`` from flags, recipe and ``--set``.

The flags are generated from :class:`~clipforge.evaluate.EvalConfig` (:mod:`.cli_config`), and
values are checked by the config itself, so an unknown task or method, an option of another
task's section or a bad shot count is one line and exit code 1 through ``clipforge.cli.main``,
as every other input error is.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .cli_config import config_command

console = Console()

_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


def default_out(task: str, dataset: str, model: str | None, pretrained: str | None) -> Path:
    """``results/<task>-<dataset>-<model>.json`` with unsafe characters replaced."""
    label = Path(pretrained).stem if pretrained else str(model)
    parts = (task, dataset.strip("/"), label)
    return Path("results") / ("-".join(_SLUG.sub("_", part) for part in parts) + ".json")


def _flat(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics as ``("fewshot/tip/1/acc1", value)`` rows."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}/")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _run_eval(config: Any) -> None:
    """Run one evaluation and print its metrics (``out`` defaults from task, data and model)."""
    from .evaluate import run_eval

    if config.out is None:
        target = default_out(config.task, config.dataset, config.model, config.pretrained)
        config = dataclasses.replace(config, out=str(target))
    result = run_eval(config)
    table = Table("metric", "value", title=f"{config.task} on {config.dataset}")
    for name, value in _flat(result["metrics"]):
        table.add_row(name, "–" if value is None else f"{value:.4f}")
    console.print(table)
    console.print(f"wrote {config.out} ({result['time']:.1f} s)")


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
    from .evaluate.config import EvalConfig

    # The command caches features in the user cache unless told otherwise; the library
    # caches only where asked (it also evaluates in-memory models between training steps).
    eval_command = config_command(
        EvalConfig, _run_eval, doc="Evaluate a model on one task and write its result as JSON.",
        defaults={"run.cache": True},
    )  # fmt: skip
    app.command("eval")(eval_command)
    app.command("report")(report_command)
