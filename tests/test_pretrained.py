"""Pretrained weights by OpenCLIP's names, through the real hub code path on caches and
servers the tests make; `clipforge models --pretrained` and `clipforge info`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import clipforge
from clipforge.cli import app
from clipforge.encoder import Encoder
from clipforge.models import PretrainedNotAvailableError, pretrained
from clipforge.models.pretrained import PretrainedWeights, find_pretrained, list_pretrained

runner = CliRunner()
BASE_ARCHITECTURES = ["RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16",
                      "ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-bigG-14"]  # fmt: skip


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, and a hub endpoint nothing listens on: the machine is offline."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    return tmp_path / "hub"


def test_the_registry_lists_openclips_tags_for_every_registered_architecture() -> None:
    models = clipforge.list_models()
    tags = list_pretrained()
    assert {w.model for w in tags} >= set(BASE_ARCHITECTURES)
    assert all(w.model in models and w.architecture in models for w in tags)
    assert len([w for w in tags if w.model in BASE_ARCHITECTURES]) >= 60
    laion = find_pretrained("ViT-B-32", "laion2b_s34b_b79k")
    assert laion.source == "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert laion.architecture == "ViT-B-32" and laion.preprocess["resize_mode"] == "shortest"
    openai = find_pretrained("ViT-B-32", "openai")
    assert openai.architecture == "ViT-B-32-quickgelu"  # OpenAI trained with QuickGELU
    assert openai.sha256 == "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    assert find_pretrained("ViT-L-14", "laion2b_s32b_b82k").preprocess["mean"] == [0.5] * 3


def test_offline_a_tag_fails_at_once_naming_the_tag_the_file_and_the_flag(hub_cache) -> None:
    with pytest.raises(PretrainedNotAvailableError) as caught:
        clipforge.create_model("ViT-B-32", pretrained="openai")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("pretrained 'openai' of ViT-B-32: cannot fetch")
    assert "timm/vit_base_patch32_clip_224.openai/resolve/main/open_clip_model.safetensors" in (
        message
    )
    assert "--pretrained /path/to/open_clip_model.safetensors" in message
    assert "openaipublic.azureedge.net" in message and "sha256 40d36571" in message


def test_an_unknown_tag_names_the_close_ones() -> None:
    with pytest.raises(clipforge.models.CheckpointError, match="did you mean laion2b_s34b_b79k"):
        clipforge.create_model("ViT-B-32", pretrained="laion2b_s34b")
    with pytest.raises(clipforge.models.CheckpointError, match="'tiny' has no tag"):
        clipforge.create_model("tiny", pretrained="openai")
    with pytest.raises(clipforge.models.CheckpointError, match="'weights.pt' does not exist"):
        clipforge.create_model("ViT-B-32", pretrained="weights.pt")  # a path, not a tag


def test_a_tag_loads_from_the_hub_cache(hub_cache: Path, monkeypatch) -> None:
    """The real path from a tag to weights: the registry names a hub repository, the hub
    client finds its snapshot in the cache (laid out as huggingface_hub writes it)."""
    original = clipforge.create_model("tiny")
    repo = hub_cache / "models--org--tiny-clip"
    snapshot = repo / "snapshots" / ("b" * 40)
    clipforge.models.save_openclip(original, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("b" * 40)
    entry = {"hf_hub": "org/tiny-clip", "url": "", "sha256": "", "quick_gelu": False,
             "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic",
             "resize_mode": "shortest"}  # fmt: skip
    monkeypatch.setattr(pretrained, "_table", lambda: {"tiny": {"mytag": entry}})
    loaded = clipforge.create_model("tiny", pretrained="mytag")
    for (name, a), b in zip(original.state_dict().items(), loaded.state_dict().values(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, msg=name)


def test_quickgelu_weights_build_the_quickgelu_variant() -> None:
    weights = PretrainedWeights("RN50", "t", "", "", "", True, {})
    assert weights.architecture == "RN50-quickgelu"
    assert PretrainedWeights("RN50-quickgelu", "t", "", "", "", True, {}).architecture == (
        "RN50-quickgelu"
    )


def test_models_lists_tags_plainly_when_piped_and_as_json() -> None:
    piped = runner.invoke(app, ["models", "--pretrained"])
    assert piped.exit_code == 0, piped.output
    lines = piped.output.splitlines()
    assert lines[0].split("\t") == ["model", "pretrained", "architecture", "hf_hub", "url",
                                    "sha256"]  # fmt: skip
    row = next(line.split("\t") for line in lines if line.startswith("ViT-B-32\tlaion2b_s34b"))
    assert row[3] == "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # not truncated
    as_json = runner.invoke(app, ["models", "--json"])
    names = [json.loads(line)["name"] for line in as_json.output.splitlines()]
    assert names == clipforge.list_models()


def test_info_describes_a_run_checkpoint(tmp_path: Path) -> None:
    model_file = tmp_path / "tiny.json"
    model_file.write_text(json.dumps(clipforge.get_model_config("tiny").to_dict()))
    run = tmp_path / "run"
    sets = [f"model.name={model_file}", f"run.out_dir={run}", "run.steps=2", "run.progress=false",
            "run.precision=fp32", "data.num_samples=16", "data.batch_size=4", "run.processes=1",
            "data.workers=0", "optim.warmup_steps=1"]  # fmt: skip
    args = ["train", "shapes-demo"]
    for override in sets:
        args += ["--set", override]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["info", str(run), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["architecture"] == "tiny" and facts["step"] == 2 and facts["processes"] == 1
    assert facts["train_config"]["data"]["batch_size"] == 4
    assert facts["precision"] == "float32"
    weights = run / "checkpoints" / "step_2.safetensors"
    encoder = Encoder.load(weights)
    assert facts["weights_blake2b"] == encoder.weights_digest  # what embed and eval record
    assert facts["parameters"] == sum(p.numel() for p in encoder.model.parameters())


def test_saved_weights_get_the_users_file_mode(tmp_path: Path) -> None:
    # safetensors creates owner-only files; a saved model must be readable as any file the
    # user creates is (shared run folders, model servers running as another user).
    path = clipforge.save_model(clipforge.create_model("tiny"), tmp_path / "m.safetensors")
    plain = tmp_path / "plain"
    plain.write_text("")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
