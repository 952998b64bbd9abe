"""A run folder belongs to one run: no silent overwrite, no pruned newest checkpoint, and a
resume that continues the run it finds rather than a changed one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clipforge.cli import app, main
from clipforge.train import TrainConfig, fit, load_train_config
from clipforge.train.run_folder import RunFolderError

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "width": 16, "heads": 1, "layers": 1},
}


def _sets(tmp_path: Path, **overrides: object) -> list[str]:
    model_file = tmp_path / "tiny.json"
    model_file.write_text(json.dumps(TINY))
    values = {"model.name": model_file, "run.out_dir": tmp_path / "run", "run.steps": 4,
              "run.checkpoint_every": 2, "run.keep_last": 2, "run.log_every": 1,
              "run.progress": "false", "run.precision": "fp32", "data.num_samples": 32,
              "data.batch_size": 8, "optim.warmup_steps": 1, **overrides}  # fmt: skip
    return [f"{key}={value}" for key, value in values.items()]


def _config(tmp_path: Path, **overrides: object) -> TrainConfig:
    return load_train_config(None, _sets(tmp_path, **overrides))


def _checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step_*.safetensors"))


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_a_new_run_into_a_folder_holding_another_is_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    fit(_config(tmp_path, **{"run.steps": 6}))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderError, match=r"holds another run .*--resume latest.*overwrite"):
        fit(_config(tmp_path, **{"run.steps": 2}))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_overwrite_replaces_the_old_run_and_keeps_the_new_runs_newest_checkpoint(
    tmp_path: Path,
) -> None:
    # The README's order: a long run, then a short one into the same folder. Pruning by step
    # number used to delete the short run's only checkpoint and leave `latest` dangling.
    run = tmp_path / "run"
    fit(_config(tmp_path, **{"run.steps": 6}))
    assert _checkpoints(run) == ["step_4.safetensors", "step_6.safetensors"]
    fit(_config(tmp_path, **{"run.steps": 3, "run.overwrite": "true"}))
    assert _checkpoints(run) == ["step_2.safetensors", "step_3.safetensors"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_3"
    assert [row["step"] for row in _log(run)] == [1, 2, 3]


def test_pruning_never_removes_the_checkpoint_just_written(tmp_path: Path) -> None:
    # Resuming from an earlier checkpoint file leaves later steps in the folder: the resumed
    # line's own checkpoints must survive pruning, and the later ones are left alone.
    run = tmp_path / "run"
    fit(_config(tmp_path, **{"run.steps": 6, "run.keep_last": 3}))
    earlier = run / "checkpoints" / "step_2.safetensors"
    fit(_config(tmp_path, **{"run.steps": 3, "run.keep_last": 3}), resume=str(earlier))
    assert _checkpoints(run) == [
        "step_2.safetensors", "step_3.safetensors", "step_4.safetensors", "step_6.safetensors",
    ]  # fmt: skip
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_3"


def test_resume_refuses_a_change_to_what_the_run_computes_and_names_each_key(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    fit(_config(tmp_path))
    config_before = (run / "config.yaml").read_text()
    changed = {"data.batch_size": 4, "optim.lr": 0.01, "run.processes": 2}
    with pytest.raises(RunFolderError) as caught:
        fit(_config(tmp_path, **changed, **{"run.steps": 6}), resume="latest")
    message = str(caught.value)
    assert "data.batch_size (8 -> 4)" in message and "optim.lr (0.0005 -> 0.01)" in message
    assert "run.processes (1 -> 2)" in message and "world_size" in message
    assert (run / "config.yaml").read_text() == config_before
    assert _checkpoints(run) == ["step_2.safetensors", "step_4.safetensors"]


def test_resume_allows_watching_changes_and_notes_them_in_the_log(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fit(_config(tmp_path))
    harmless = {"run.steps": 6, "run.log_every": 2, "run.checkpoint_every": 3}
    result = fit(_config(tmp_path, **harmless), resume="latest")
    assert (result.start_step, result.step) == (4, 6)
    note = next(row for row in _log(run) if row.get("event") == "resume")
    assert note["step"] == 4
    assert note["changed"] == {"run.checkpoint_every": [2, 3], "run.log_every": [1, 2],
                               "run.steps": [4, 6]}  # fmt: skip
    assert "steps: 6" in (run / "config.yaml").read_text()


def test_cli_refuses_an_occupied_folder_in_one_line_and_says_a_finished_run_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = ["train", "shapes-demo"]
    for override in _sets(tmp_path, **{"run.processes": 1, "data.workers": 0}):
        args += ["--set", override]
    assert runner.invoke(app, args).exit_code == 0
    monkeypatch.setattr(sys, "argv", ["clipforge", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1 and err.startswith("error:") and "\n" not in err
    assert "holds another run" in err
    finished = runner.invoke(app, [*args, "--resume", "latest"])
    assert finished.exit_code == 0, finished.output
    assert "already finished at step 4" in " ".join(finished.output.split())
