"""The ``clipforge`` command: a thin layer that parses, validates and calls the library."""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_config import config_command, keyword_param
from .cli_eval import register as _register_eval
from .cli_search import register as _register_search
from .train.config import TrainConfig
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
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of an error; log at DEBUG level.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


_JSON = Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")]


@app.command()
def models(
    pretrained: Annotated[
        bool, typer.Option("--pretrained", help="List OpenCLIP's pretrained tags instead.")
    ] = False,
    json_: _JSON = False,
) -> None:
    """List the registered model configs (or, with --pretrained, the weights they can load).

    Example: clipforge models --pretrained | grep ViT-B-32
    """
    from .models import get_model_config, list_models
    from .models.pretrained import list_pretrained

    if pretrained:
        header = ["model", "pretrained", "architecture", "hf_hub", "url", "sha256"]
        rows = [[w.model, w.tag, w.architecture, f"hf-hub:{w.hf_hub}", w.url, w.sha256]
                for w in list_pretrained() if not w.model.endswith("-quickgelu")]  # fmt: skip
    else:
        header = ["name", "image_tower", "image_size", "embed_dim", "context_length"]
        rows = []
        for name in list_models():
            cfg = get_model_config(name)
            vision = cfg.vision_cfg
            tower = (
                f"ResNet {list(vision.layers)}" if vision.is_resnet else f"ViT/{vision.patch_size}"
            )
            rows.append([name, tower, vision.image_size, cfg.embed_dim,
                         cfg.text_cfg.context_length])  # fmt: skip
    _print_rows(header, rows, as_json=json_)


def _print_rows(header: list[str], rows: list[list[object]], *, as_json: bool) -> None:
    """A listing as JSON lines, as a table on a terminal, or as tab-separated lines when piped
    (a table would truncate names to the width of a terminal that is not there)."""
    if as_json:
        for row in rows:
            print(json.dumps(dict(zip(header, row, strict=True))))
    elif console.is_terminal:
        table = Table(*header)
        for row in rows:
            table.add_row(*map(str, row))
        console.print(table)
    else:
        for row in [header, *rows]:
            print("\t".join(map(str, row)))


@app.command()
def info(
    checkpoint: Annotated[
        str, typer.Argument(help="Checkpoint: file, directory, hf-hub:org/name or a run folder.")
    ],
    json_: _JSON = False,
) -> None:
    """Describe a checkpoint: architecture, parameters, precision, weights digest and, for a
    clipforge run, its step and training config.

    Example: clipforge info runs/demo/checkpoints/step_520.safetensors
    """
    from .checkpoint_info import describe_checkpoint

    facts = describe_checkpoint(checkpoint)
    if json_:
        print(json.dumps(facts))
        return
    for key, value in facts.items():
        if key != "train_config":
            console.print(f"{key.replace('_', ' ')}: {value}", highlight=False)
    if "train_config" in facts:
        console.print("training config:", highlight=False)
        print(yaml.safe_dump(facts["train_config"], sort_keys=False).rstrip())


@app.command()
def classify(
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    labels: Annotated[
        str, typer.Option(help="The candidate labels, comma-separated: 'a cat,a dog'.")
    ],
    model: Annotated[str, typer.Option(help="Architecture name or checkpoint.")] = "ViT-B-32",
    pretrained: Annotated[
        str | None, typer.Option(help="Weights: a checkpoint or an OpenCLIP tag (openai, ...).")
    ] = None,
    template: Annotated[
        str, typer.Option(help="Prompt each label is put into; {} stands for the label.")
    ] = "a photo of {}.",
    top: Annotated[int, typer.Option(min=1, help="Labels to print per image.")] = 5,
    json_: _JSON = False,
) -> None:
    """Zero-shot classification: rank the labels for each image, with probabilities.

    Example: clipforge classify cat.jpg dog.png --labels "a cat,a dog" --pretrained openai
    """
    from .encoder import Encoder
    from .transforms import load_image
    from .zeroshot import template_head

    names = [label.strip() for label in labels.split(",") if label.strip()]
    encoder = Encoder.load(model, pretrained, progress=False)
    head = template_head(encoder, names, [template])
    features = encoder.pil_images([load_image(path) for path in images])
    scale = encoder.model.logit_scale.exp().float()
    probs = (scale * head.logits(features).float()).softmax(dim=-1)  # (images, labels)
    for path, row in zip(images, probs.tolist(), strict=True):
        ranked = sorted(zip(names, row, strict=True), key=lambda pair: -pair[1])[:top]
        if json_:
            print(json.dumps({"image": str(path), "labels": [
                {"label": name, "score": score} for name, score in ranked]}))  # fmt: skip
        else:
            print(f"{path}: " + ", ".join(f"{name} {score:.1%}" for name, score in ranked))


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
    """Convert CLIP weights between clipforge, Hugging Face and OpenCLIP formats.

    Example: clipforge convert ViT-B-32.pt vit-b-32-hf --to hf --model ViT-B-32-quickgelu
    """
    from .models import create_model, save_hf, save_model, save_openclip

    savers = {"clipforge": save_model, "hf": save_hf, "openclip": save_openclip}
    clip = create_model(model, pretrained=src) if model else create_model(src)
    out = savers[to.value](clip, dst)
    console.print(f"wrote {to.value} model to {out}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/demo"),
    quick: Annotated[bool, typer.Option(help="A one-minute version, for a first look.")] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Training override, e.g. run.steps=100.")
    ] = None,
) -> None:
    """Train a small CLIP on the shapes world, evaluate it and write a report to OUT.

    Example: clipforge demo --quick --out runs/quick
    """
    from .demo import run_demo

    metrics = run_demo(out, quick=quick, overrides=set_ or [])
    table = Table("figure", "value")
    for key, value in metrics["eval"].items():
        table.add_row(key, f"{100 * value:.1f}%")
    table.add_row("wall time", f"{metrics['wall_time_s']:.0f} s")
    console.print(table)
    console.print(f"report: {out / 'report.md'} (and report.html)")


def _recipe_file(name: str) -> Path:
    """A recipe argument as a file: a path that exists, else a shipped recipe's name."""
    from .recipes import recipe_path

    return Path(name) if Path(name).is_file() else recipe_path(name)


def _train(config: TrainConfig, resume: str | None) -> None:
    """Train (or fine-tune) a CLIP model as the recipe says; torchrun runs it on many processes.

    Example: clipforge train shapes-demo --set run.out_dir=runs/mine --set run.steps=200
    """
    from .train import fit
    from .train.stop import TrainingStopped

    try:
        result = fit(config, resume=resume)
    except TrainingStopped as stopped:
        err_console.print(str(stopped))
        raise typer.Exit(128 + stopped.signum) from None
    checkpoints = result.run_dir / "checkpoints"
    if result.step == result.start_step:
        console.print(
            f"The run in {result.run_dir} is already finished at step {result.step} "
            f"(run.steps={config.run.steps}); raise run.steps to train further."
        )
        return
    console.print(
        f"Trained steps {result.start_step} to {result.step} at "
        f"{result.samples_per_second:.0f} samples/s; checkpoints are in {checkpoints}."
    )


_RESUME = keyword_param(
    "resume", str | None, typer.Option(help="'latest' or a checkpoint file to continue from."), None
)
# A training config has five sections of many keys: they are set with --set section.key=value
# (and listed by --print-config), not given a flag each.
app.command("train")(
    config_command(
        TrainConfig,
        _train,
        doc=_train.__doc__ or "",
        recipe=_recipe_file,
        flags=False,
        extra=(_RESUME,),
    )
)


_register_eval(app)
_register_search(app)

data_app = typer.Typer(help="Data sets: generate the shapes world.", no_args_is_help=True)
app.add_typer(data_app, name="data")


class DataFormat(str, Enum):
    wds = "wds"
    csv = "csv"


@data_app.command("shapes")
def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output directory.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 10000,
    format_: Annotated[
        DataFormat, typer.Option("--format", help="Output layout.")
    ] = DataFormat.wds,
    split: Annotated[str, typer.Option(help="train, val or heldout.")] = "train",
    image_size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    shard_size: Annotated[int, typer.Option(help="Samples per shard (wds).")] = 1000,
    seed: Annotated[int, typer.Option(help="World seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Write shapes-world samples as webdataset shards or a CSV + image folder.

    Example: clipforge data shapes data/shapes --n 10000 --format wds
    """
    from .data.shapes import write_shapes

    summary = write_shapes(out, n, format=format_.value, split=split, shard_size=shard_size,
                           image_size=image_size, seed=seed, workers=workers)  # fmt: skip
    shards = f" in {summary.shards} shards" if summary.format == "wds" else ""
    console.print(
        f"Wrote {summary.count} {summary.split} samples{shards} to {summary.out_dir} "
        f"({summary.samples_per_second:.0f} samples/s).",
        highlight=False,
    )


def _examples_last(typer_app: typer.Typer) -> None:
    """Move each command's ``Example:`` paragraph from its docstring to the end of its
    ``--help`` (typer prints the docstring above the options, an epilog below them)."""
    groups = [typer_app, *(group.typer_instance for group in typer_app.registered_groups)]
    for info in (info for group in groups for info in group.registered_commands):
        doc = inspect.cleandoc(info.help or info.callback.__doc__ or "")
        text, found, example = doc.partition("Example:")
        if found and not info.epilog:
            info.help, info.epilog = text.strip(), f"Example: {example.strip()}"


_examples_last(app)


def main() -> None:
    """Entry point: input errors become one line naming the input and exit code 1, not a
    traceback (``clipforge --debug ...`` shows the traceback)."""
    from .models import PretrainedNotAvailableError

    # Every input error of the library is a ValueError naming the input (CheckpointError,
    # ConfigError, TrainConfigError, DataError, ...); file system errors (a file where a folder
    # must go, a folder where a file must go, no permission) are OSErrors naming the path.
    errors = (ValueError, OSError, PretrainedNotAvailableError)
    try:
        app()
    except errors as err:
        if _debug(sys.argv[1:]):
            raise
        err_console.print(f"[red]error:[/red] {escape(_describe(err))}")
        raise SystemExit(1) from None


def _debug(args: list[str]) -> bool:
    """Whether ``--debug`` is among the global options (those before the command)."""
    options = itertools.takewhile(lambda arg: arg.startswith("-"), args)
    return "--debug" in options


# What a file-system error means at a path the user gave.
_OS_ERROR_HINTS = {
    FileExistsError: "a file is in the way of a folder",
    IsADirectoryError: "a folder is in the way of a file",
    NotADirectoryError: "a file is in the way of a folder",
    PermissionError: "permission denied",
}


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        hint = next((h for t, h in _OS_ERROR_HINTS.items() if isinstance(err, t)), err.strerror)
        return f"{err.filename}: {hint} ({err.strerror})"
    return str(err)
