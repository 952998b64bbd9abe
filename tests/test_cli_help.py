"""The command line's manners: every --help ends with an example, and listing the commands or
the version does not wait for torch."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from clipforge.cli import app

runner = CliRunner()
COMMANDS = [["models"], ["info"], ["classify"], ["convert"], ["demo"], ["train"], ["eval"],
            ["report"], ["embed"], ["index"], ["dedup"], ["serve"], ["data", "shapes"]]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_ends_with_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    example = result.output.rfind("Example: clipforge ")
    assert example > result.output.rfind("╰"), result.output  # below the option panels
