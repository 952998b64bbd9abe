"""The ``clipforge`` command."""

import typer

app = typer.Typer(help="clipforge: CLIP-style models from data to search.", no_args_is_help=True)


def main() -> None:
    app()
