"""The command line, run as a user would run it."""

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

import clipforge

MODELS = Path(__file__).parent / "fixtures" / "models"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clipforge", *args], capture_output=True, text=True, timeout=300
    )


def test_models_lists_registry() -> None:
    result = run("models")
    assert result.returncode == 0, result.stderr
    for name in ("ViT-B-32", "RN50x64-quickgelu", "tiny"):
        assert name in result.stdout


def test_convert_between_all_formats(tmp_path: Path) -> None:
    io = load_file(MODELS / "tiny-vit.io.safetensors")
    src = str(MODELS / "tiny-vit.safetensors")
    assert run("convert", src, str(tmp_path / "hf"), "--to", "hf").returncode == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "clip"
    result = run("convert", str(tmp_path / "hf"), str(tmp_path / "oc"), "--to", "openclip")
    assert result.returncode == 0, result.stderr
    result = run("convert", str(tmp_path / "oc"), str(tmp_path / "native"), "--to", "clipforge")
    assert result.returncode == 0, result.stderr
    model = clipforge.create_model(tmp_path / "native").eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(io["pixels"]), io["image_features"])


def test_convert_with_explicit_architecture(tmp_path: Path) -> None:
    torch.save(clipforge.create_model("tiny").state_dict(), tmp_path / "w.pt")
    result = run("convert", str(tmp_path / "w.pt"), str(tmp_path / "out"), "--model", "tiny")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_errors_are_one_line_naming_the_input(tmp_path: Path) -> None:
    result = run("convert", str(tmp_path / "missing.pt"), str(tmp_path / "out"))
    assert result.returncode == 1
    assert "missing.pt' is neither a registered name nor an existing file" in result.stderr
    assert "Traceback" not in result.stderr
    result = run("convert", str(MODELS / "tiny-rn.safetensors"), str(tmp_path / "hf"), "--to", "hf")
    assert result.returncode == 1 and "no ResNet image tower" in result.stderr
    result = run("convert", "x.pt", str(tmp_path / "o"), "--to", "onnx")
    assert result.returncode == 2 and "onnx" in result.stderr


def test_train_recipe_with_periodic_eval_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["--set", "data.num_samples=512", "--set", "data.batch_size=64",
              "--set", "data.workers=1", "--set", f"run.out_dir={out}", "--set", "run.progress=false",
              "--set", "run.checkpoint_every=2", "--set", "optim.warmup_steps=1"]  # fmt: skip
    result = run(
        "train", "shapes-demo", *common, "--set", "run.steps=2", "--set", "run.eval_every=2"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("zeroshot_shape_acc" in r for r in records)
    result = run("train", "shapes-demo", *common, "--set", "run.steps=3", "--resume", "latest")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step_3"


def test_train_rejects_bad_override(tmp_path: Path) -> None:
    result = run("train", "shapes-demo", "--set", "optim.lrr=1")
    assert result.returncode == 1 and "unknown key 'optim.lrr'" in result.stderr
    result = run("train", "no-such-recipe")
    assert result.returncode == 1 and "no recipe named 'no-such-recipe'" in result.stderr


def test_data_shapes_writes_shards(tmp_path: Path) -> None:
    result = run("data", "shapes", str(tmp_path / "s"), "--n", "20", "--shard-size", "10")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "s").glob("*.tar")) == ["00000.tar", "00001.tar"]
    result = run("data", "shapes", str(tmp_path / "t"), "--n", "-1")
    assert result.returncode == 1 and "-1" in result.stderr
