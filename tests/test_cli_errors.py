"""Every subcommand answers a bad input with one line naming it and exit code 1; ``--debug``
shows the traceback instead."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from clipforge.cli import app, main

pytestmark = pytest.mark.usefixtures("one_thread")
EVAL = [
    "eval",
    "--task",
    "zeroshot",
    "--dataset",
    "shapes/shape",
    "--size",
    "16",
    "--model",
    "tiny",
]

# (arguments, what the one line must say); {tmp} is the test's folder, which holds `garbage.pt`,
# `garbage.safetensors`, `garbage.yaml`, a folder `adir` and a file `existing.txt`.
BAD_INPUTS = [
    (["train", "{tmp}/missing.yaml"], "no recipe named '{tmp}/missing.yaml'"),
    (["train", "{tmp}/garbage.yaml"],
     "{tmp}/garbage.yaml: cannot parse, not valid YAML (line 2, column 1: expected ',' or ']'"),
    (["train", "shapes-demo", "--set", "run.out_dir={tmp}/existing.txt"],
     "{tmp}/existing.txt: a file is in the way of a folder"),
    (["train", "shapes-demo", "--set", "run.out_dir={tmp}/run", "--resume", "latest"],
     "no checkpoint to resume in '{tmp}/run'"),
    (["convert", "{tmp}/missing.pt", "{tmp}/out"], "'{tmp}/missing.pt' is neither"),
    (["convert", "{tmp}/garbage.safetensors", "{tmp}/out"],
     "{tmp}/garbage.safetensors: not a readable safetensors file"),
    ([*EVAL, "--out", "{tmp}/adir"], "{tmp}/adir: a folder is in the way of a file"),
    ([*EVAL, "--pretrained", "{tmp}/garbage.pt", "--out", "{tmp}/r.json"],
     "{tmp}/garbage.pt: cannot read checkpoint (UnpicklingError: Unsupported operand"),
    (["convert", "{tmp}/garbage.pt", "{tmp}/out", "--model", "tiny"],
     "{tmp}/garbage.pt: cannot read checkpoint (UnpicklingError: Unsupported operand"),
    (["convert", "laion2b_s34b", "{tmp}/out", "--model", "ViT-B-32"],
     "pretrained 'laion2b_s34b' is neither a file nor a tag of ViT-B-32; did you mean"),
    (["eval", "--task", "zeroshot", "--dataset", "{tmp}/missing", "--model", "tiny"],
     "{tmp}/missing"),
    (["report", "{tmp}/missing.json", "--out", "{tmp}/rep"], "result file '{tmp}/missing.json'"),
    (["report", "{tmp}/garbage.yaml", "--out", "{tmp}/rep"], "{tmp}/garbage.yaml"),
    (["embed", "{tmp}/missing", "--out", "{tmp}/emb", "--model", "tiny"],
     "embedding input '{tmp}/missing' does not exist"),
    (["index", "{tmp}/adir", "--out", "{tmp}/idx"], "{tmp}/adir is not an embedded collection"),
    (["dedup", "{tmp}/missing", "--out", "{tmp}/g.json"], "{tmp}/missing"),
    (["serve", "{tmp}/missing.yaml"], "{tmp}/missing.yaml"),
    (["serve", "{tmp}/garbage.yaml"], "{tmp}/garbage.yaml"),
    (["info", "{tmp}/missing.safetensors"],
     "checkpoint '{tmp}/missing.safetensors' does not exist"),
    (["info", "{tmp}/garbage.safetensors"],
     "{tmp}/garbage.safetensors: not a readable safetensors file"),
    (["classify", "{tmp}/missing.png", "--labels", "a,b", "--model", "tiny"],
     "{tmp}/missing.png"),
    (["classify", "{tmp}/garbage.pt", "--labels", "a,b", "--model", "tiny"], "{tmp}/garbage.pt"),
    (["data", "shapes", "{tmp}/existing.txt", "--n", "4"],
     "{tmp}/existing.txt: a file is in the way of a folder"),
    (["demo", "--quick", "--out", "{tmp}/existing.txt"],
     "{tmp}/existing.txt: a file is in the way of a folder"),
]  # fmt: skip


@pytest.fixture
def bad_files(tmp_path: Path) -> Path:
    (tmp_path / "garbage.pt").write_bytes(b"garbage, not a pickle\n")
    (tmp_path / "garbage.safetensors").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "garbage.yaml").write_text("run: [1, 2\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "existing.txt").write_text("a user's file\n")
    return tmp_path


def _run(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", ["clipforge", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_a_bad_input_is_one_line_naming_it(
    args: list[str], message: str, bad_files: Path, monkeypatch, capsys
) -> None:
    args = [arg.format(tmp=bad_files) for arg in args]
    assert _run(monkeypatch, args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]  # progress lines may come before it
    assert last.startswith("error: ") and message.format(tmp=bad_files) in last, err
    assert (bad_files / "existing.txt").read_text() == "a user's file\n"


def test_debug_shows_the_traceback(bad_files: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["clipforge", "--debug", "data", "shapes",
                                      str(bad_files / "existing.txt"), "--n", "4"])  # fmt: skip
    with pytest.raises(FileExistsError):
        main()


@pytest.mark.parametrize(
    "args",
    [
        [*EVAL, "--out", "{tmp}/r.json"],
        ["embed", "{tmp}/images", "--out", "{tmp}/emb", "--model", "tiny"],
    ],
    ids=["eval", "embed"],
)
def test_random_weights_are_warned_about(args: list[str], tmp_path: Path, caplog) -> None:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.png")
    result = CliRunner().invoke(app, [arg.format(tmp=tmp_path) for arg in args])
    assert result.exit_code == 0, result.output
    assert "model 'tiny' has random weights: no --pretrained was given" in caplog.text
