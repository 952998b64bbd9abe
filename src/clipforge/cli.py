"""The ``clipforge`` command: a thin layer that parses, validates and calls the library."""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .version import __version__

app = typer.Typer(
    help="clipforge: CLIP-style models from data to search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class ExportFormat(str, Enum):
    clipforge = "clipforge"
    hf = "hf"
    openclip = "openclip"


def _version(value: bool) -> None:
    if value:
        console.print(f"clipforge {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def models() -> None:
    """List the registered model configs."""
    from .models import get_model_config, list_models

    table = Table("name", "image tower", "image size", "embed dim", "text ctx")
    for name in list_models():
        cfg = get_model_config(name)
        vision = cfg.vision_cfg
        tower = f"ResNet {list(vision.layers)}" if vision.is_resnet else f"ViT/{vision.patch_size}"
        table.add_row(name, tower, str(vision.image_size), str(cfg.embed_dim),
                      str(cfg.text_cfg.context_length))  # fmt: skip
    console.print(table)


@app.command()
def convert(
    src: Annotated[str, typer.Argument(help="Checkpoint: file, directory or hf-hub:org/name.")],
    dst: Annotated[
        Path, typer.Argument(help="Output directory (or .safetensors file for clipforge).")
    ],
    to: Annotated[ExportFormat, typer.Option(help="Output format.")] = ExportFormat.clipforge,
    model: Annotated[
        str | None,
        typer.Option(help="Architecture name or config JSON, when SRC does not record one."),
    ] = None,
) -> None:
    """Convert CLIP weights between clipforge, Hugging Face and OpenCLIP formats."""
    from .models import create_model, save_hf, save_model, save_openclip

    savers = {"clipforge": save_model, "hf": save_hf, "openclip": save_openclip}
    clip = create_model(model, pretrained=src) if model else create_model(src)
    out = savers[to.value](clip, dst)
    console.print(f"wrote {to.value} model to {out}")


def main() -> None:
    """Entry point: library errors become one readable line and exit code 1, not a traceback."""
    from .models import CheckpointError, ConfigError, PretrainedNotAvailableError

    try:
        app()
    except (CheckpointError, ConfigError, PretrainedNotAvailableError, FileNotFoundError) as err:
        err_console.print(f"[red]error:[/red] {err}")
        raise SystemExit(1) from None
