"""``clipforge eval`` and ``clipforge report`` end to end, on a model trained for a minute.

The model is the quick demo's (``run_demo(quick=True)``), trained once per test session. The
few-shot runs use the held-out colour-shape pairs: shots come from ``heldout[800:1440]`` and
tuning from ``heldout[2800:2992]``, both disjoint from the test images ``heldout[0:192]``.
Set ``CLIPFORGE_E2E_CHECKPOINT`` to a checkpoint of that demo to skip the training.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipforge.cli import app, main
from clipforge.demo.run import run_demo
from clipforge.evaluate import read_result

HELDOUT = ["--dataset", "shapes/heldout", "--split", "heldout[0:192]"]
FEWSHOT_SPLITS = ["--train-split", "heldout[800:1440]", "--val-split", "heldout[2800:2992]"]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    given = os.environ.get("CLIPFORGE_E2E_CHECKPOINT")
    if given:
        return given
    run = tmp_path_factory.mktemp("demo")
    run_demo(run, quick=True, progress=False)
    latest = (run / "checkpoints" / "latest").read_text().strip()
    return str(run / "checkpoints" / f"{latest}.safetensors")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One feature cache for the session: each set is encoded once, whatever reads it."""
    return str(tmp_path_factory.mktemp("features"))


def run_cli(*args: str) -> dict:
    """Run ``clipforge eval ARGS`` in-process; return the result file it wrote."""
    result = CliRunner().invoke(app, ["eval", *args, "--no-progress"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    out = Path(args[args.index("--out") + 1])
    assert str(out) in result.output.replace("\n", "")
    json.loads(out.read_text())  # strict JSON
    return read_result(out)


def test_zeroshot(checkpoint: str, cache_dir: str, tmp_path: Path) -> None:
    out = str(tmp_path / "zs.json")
    result = run_cli(
        "--task",
        "zeroshot",
        *HELDOUT,
        "--pretrained",
        checkpoint,
        "--cache-dir",
        cache_dir,
        "--out",
        out,
    )
    metrics = result["metrics"]
    assert set(metrics) == {"acc1", "acc5", "mean_per_class_recall"}
    assert metrics["acc5"] >= metrics["acc1"]
    assert result["data"]["test"]["samples"] == 192
    assert result["config"]["split"] == "heldout[0:192]"
    assert result["model"]["identity"]["weights_file"]["path"] == str(Path(checkpoint).resolve())


def _fewshot(checkpoint: str, cache_dir: str, out: Path, methods: str) -> dict:
    return run_cli(
        "--task",
        "fewshot",
        *HELDOUT,
        *FEWSHOT_SPLITS,
        "--method",
        methods,
        "--shots",
        "16",
        "--seed",
        "0",
        "--pretrained",
        checkpoint,
        "--cache-dir",
        cache_dir,
        "--out",
        str(out),
    )


def _check_beats_zeroshot(result: dict, methods: list[str]) -> None:
    metrics = result["metrics"]
    zero_shot = metrics["zeroshot"]["acc1"]
    for method in methods:
        assert metrics["fewshot"][method]["16"]["acc1"] > zero_shot, (method, metrics)
    assert result["details"]["shots"] == [16]
    assert result["data"]["train"]["samples"] == 640 and result["data"]["val"]["samples"] == 192


def test_fewshot_training_free_methods_beat_zeroshot(
    checkpoint: str, cache_dir: str, tmp_path: Path
) -> None:
    result = _fewshot(checkpoint, cache_dir, tmp_path / "fs.json", "tip,gda")
    _check_beats_zeroshot(result, ["tip", "gda"])
    hparams = result["details"]["hparams"]
    assert hparams["tip"]["16"]["searched_on"] == "val" and "alpha" in hparams["gda"]["16"]


@pytest.mark.slow
def test_fewshot_trained_methods_beat_zeroshot(
    checkpoint: str, cache_dir: str, tmp_path: Path
) -> None:
    result = _fewshot(checkpoint, cache_dir, tmp_path / "fs.json", "tip-f,coop,linear")
    _check_beats_zeroshot(result, ["tip-f", "coop", "linear"])
    assert "lambda" in result["details"]["hparams"]["linear"]["16"]


@pytest.mark.slow
def test_linear_probe(checkpoint: str, cache_dir: str, tmp_path: Path) -> None:
    result = run_cli(
        "--task",
        "linear-probe",
        *HELDOUT,
        *FEWSHOT_SPLITS,
        "--pretrained",
        checkpoint,
        "--cache-dir",
        cache_dir,
        "--out",
        str(tmp_path / "lp.json"),
    )
    assert result["metrics"]["acc1"] > 0.5  # 12 pairs occur; chance is 1/12
    assert result["details"]["hparams"]["lambda"] > 0


def test_report_of_cli_results(checkpoint: str, cache_dir: str, tmp_path: Path) -> None:
    common = ["--pretrained", checkpoint, "--cache-dir", cache_dir]
    run_cli("--task", "zeroshot", *HELDOUT, *common, "--out", str(tmp_path / "r" / "zs.json"))
    run_cli(
        "--task",
        "retrieval",
        "--dataset",
        "shapes/retrieval",
        "--split",
        "val[0:96]",
        *common,
        "--out",
        str(tmp_path / "r" / "ret.json"),
    )
    run_cli(
        "--task",
        "robustness",
        "--dataset",
        "shapes/colour",
        "--split",
        "val[0:96]",
        "--val-split",
        "val[1000:1096]",
        *common,
        "--out",
        str(tmp_path / "r" / "rob.json"),
    )
    result = CliRunner().invoke(
        app, ["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]
    )
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "rep" / "report.md").read_text()
    assert "## Zero-shot classification" in markdown and "## Retrieval" in markdown
    assert (tmp_path / "rep" / "reliability_0.png").is_file()
    assert (tmp_path / "rep" / "retrieval_recall.png").is_file()


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run the ``clipforge`` entry point; it must fail with exit 1 and one error line."""
    monkeypatch.setattr(sys, "argv", ["clipforge", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    return " ".join(err.split())  # rich may wrap a long line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "segment", "--dataset", "shapes/shape"], "unknown task 'segment'"),
        (
            ["--task", "fewshot", "--dataset", "shapes/shape", "--method", "tip,lora"],
            "unknown method 'lora'",
        ),
        (
            ["--task", "zeroshot", "--dataset", "shapes/shape", "--method", "tip"],
            "methods=tip does not apply to task 'zeroshot'",
        ),
        (
            ["--task", "linear-probe", "--dataset", "shapes/shape", "--shots", "4"],
            "shots=4 does not apply to task 'linear-probe'",
        ),
        (
            ["--task", "fewshot", "--dataset", "shapes/shape", "--shots", "1,0"],
            "fewshot.shots must be positive integers, got 0",
        ),
        (
            ["--task", "fewshot", "--dataset", "shapes/shape", "--shots", "two"],
            "fewshot.shots='two' has the wrong type; expected int",
        ),
        (
            ["--task", "zeroshot", "--dataset", "data/missing.csv"],
            "'data/missing.csv' is neither an existing path nor a known name",
        ),
        (
            ["--task", "zeroshot", "--dataset", "shapes/heldout", "--split", "train"],
            "split 'train' has no held-out pairs",
        ),
        (
            ["--task", "zeroshot", "--dataset", "shapes/shape", "--split", "test"],
            "split 'test' is unknown",
        ),
        (
            ["--task", "zeroshot", "--dataset", "shapes/shape", "--split", "val[9:2]"],
            "split 'val[9:2]' is an empty range",
        ),
    ],
)
def test_cli_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    err = run_main(
        monkeypatch,
        capsys,
        "eval",
        *args,
        "--model",
        "tiny",
        "--no-cache",
        "--no-progress",
        "--out",
        str(tmp_path / "r.json"),
    )
    assert message in err
    assert not (tmp_path / "r.json").exists()


def test_report_error_names_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"task": "zeroshot"')
    err = run_main(monkeypatch, capsys, "report", str(bad), "--out", str(tmp_path / "rep"))
    assert "broken.json" in err and "not valid JSON" in err
