"""Weights in every format: exactness against the reference fixtures, round trips, clear errors."""

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import clipforge
from clipforge.models import CheckpointError, CLIPConfig, PretrainedNotAvailableError
from clipforge.models.fit import resize_grid_embedding, resize_text_embedding

FIXTURES = Path(__file__).parent / "fixtures"

MODELS = FIXTURES / "models"
OPENAI_LAYOUT = ["tiny-vit", "tiny-vit-quickgelu", "tiny-rn"]


def _features(model: clipforge.CLIP, io: dict) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return model.encode_image(io["pixels"]), model.encode_text(io["tokens"])


def _assert_matches_reference(model: clipforge.CLIP, name: str) -> None:
    io = load_file(MODELS / f"{name}.io.safetensors")
    image, text = _features(model, io)
    torch.testing.assert_close(image, io["image_features"], rtol=0, atol=1e-5)
    torch.testing.assert_close(text, io["text_features"], rtol=0, atol=1e-5)
    torch.testing.assert_close(model.logit_scale.detach().reshape(1), io["logit_scale"])


@pytest.mark.parametrize("name", OPENAI_LAYOUT)
def test_openclip_layout_fixture_reproduces_reference(name: str) -> None:
    _assert_matches_reference(clipforge.create_model(MODELS / f"{name}.safetensors"), name)


def test_hf_fixture_converts_and_reproduces_reference() -> None:
    _assert_matches_reference(clipforge.create_model(MODELS / "tiny-hf-clip"), "tiny-hf-clip")


def _config_of(name: str) -> CLIPConfig:
    return clipforge.create_model(MODELS / f"{name}.safetensors").config


@pytest.mark.parametrize("name", OPENAI_LAYOUT)
def test_state_dict_pt_with_wrappers(name: str, tmp_path: Path) -> None:
    weights = load_file(MODELS / f"{name}.safetensors")
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.bin"
    torch.save(weights, plain)
    # An OpenCLIP training checkpoint saved from DDP: {"state_dict": {"module.<key>": ...}}.
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in weights.items()}}, wrapped)
    for path in (plain, wrapped):
        _assert_matches_reference(clipforge.create_model(_config_of(name), pretrained=path), name)


def _openai_like_archive(tmp_path: Path) -> tuple[Path, clipforge.CLIP]:
    """A TorchScript archive like OpenAI's: traced model plus its scalar attributes."""
    cfg = CLIPConfig.from_dict(
        {
            "embed_dim": 32,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8},
            "text_cfg": {"context_length": 16, "width": 128, "heads": 2, "layers": 2},
        }
    )
    model = clipforge.create_model(cfg).eval()

    class Archive(torch.nn.Module):  # the weights at top level, plus OpenAI's scalar attributes
        def __init__(self) -> None:
            super().__init__()
            for name, child in model.named_children():
                self.add_module(name, child)
            for name, param in model.named_parameters(recurse=False):
                self.register_parameter(name, param)
            for key, value in (
                ("input_resolution", 32),
                ("context_length", 16),
                ("vocab_size", 49408),
            ):
                self.register_buffer(key, torch.tensor(value))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.logit_scale

    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(torch.jit.trace(Archive(), torch.ones(1)), str(path))
    return path, model


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_openai_torchscript_archive_infers_architecture(tmp_path: Path) -> None:
    path, original = _openai_like_archive(tmp_path)
    loaded = clipforge.create_model(path)
    assert loaded.config == original.config
    pixels, tokens = torch.randn(2, 3, 32, 32), torch.tensor([[49406, 320, 49407] + [0] * 13] * 2)
    torch.testing.assert_close(_features(loaded, {"pixels": pixels, "tokens": tokens}),
                               _features(original, {"pixels": pixels, "tokens": tokens}))  # fmt: skip


def test_resnet_architecture_inferred_from_shapes(tmp_path: Path) -> None:
    model = clipforge.create_model("tiny-rn")
    torch.save(model.state_dict(), tmp_path / "rn.pt")
    inferred = clipforge.create_model(tmp_path / "rn.pt").config
    assert inferred.vision_cfg.layers == (1, 1, 1, 1)
    assert inferred.vision_cfg.image_size == 64 and inferred.vision_cfg.width == 32
    assert inferred.embed_dim == 128 and inferred.text_cfg.context_length == 32


def test_native_save_round_trip(tmp_path: Path) -> None:
    model = clipforge.create_model(MODELS / "tiny-vit-quickgelu.safetensors")
    for target in (tmp_path / "native", tmp_path / "single.safetensors"):
        clipforge.save_model(model, target)
        _assert_matches_reference(clipforge.create_model(target), "tiny-vit-quickgelu")
    assert json.loads((tmp_path / "native" / "config.json").read_text())["model_cfg"]["quick_gelu"]
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_openclip_export_round_trip(tmp_path: Path) -> None:
    model = clipforge.create_model(MODELS / "tiny-rn.safetensors")
    clipforge.models.save_openclip(model, tmp_path / "oc")
    assert (tmp_path / "oc" / "open_clip_model.safetensors").is_file()
    document = json.loads((tmp_path / "oc" / "open_clip_config.json").read_text())
    assert document["model_cfg"]["vision_cfg"]["layers"] == [1, 1, 1, 1]
    _assert_matches_reference(clipforge.create_model(tmp_path / "oc"), "tiny-rn")


def test_hf_export_loads_in_transformers_with_same_features(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    io = load_file(MODELS / "tiny-vit.io.safetensors")
    model = clipforge.create_model(MODELS / "tiny-vit.safetensors")
    clipforge.models.save_hf(model, tmp_path / "hf")
    hf = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=io["pixels"])
        text = hf.get_text_features(input_ids=io["tokens"])
    image = image if torch.is_tensor(image) else image.pooler_output
    text = text if torch.is_tensor(text) else text.pooler_output
    torch.testing.assert_close(image, io["image_features"], rtol=0, atol=1e-5)
    torch.testing.assert_close(text, io["text_features"], rtol=0, atol=1e-5)
    # ... and back again.
    _assert_matches_reference(clipforge.create_model(tmp_path / "hf"), "tiny-vit")


def test_hf_export_of_resnet_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no ResNet image tower"):
        clipforge.models.save_hf(clipforge.create_model("tiny-rn"), tmp_path / "hf")


def test_position_embeddings_resized_for_larger_inputs(tmp_path: Path) -> None:
    path = MODELS / "tiny-vit.safetensors"
    model = clipforge.create_model(path, image_size=64, context_length=100)
    assert model.visual.positional_embedding.shape == (1 + 8 * 8, 64)
    assert model.positional_embedding.shape == (100, 32)
    original = load_file(path)
    torch.testing.assert_close(
        model.positional_embedding[:20], original["positional_embedding"][:20].float()
    )
    # Stretching a constant grid keeps it constant; the class position is kept as is.
    grid = torch.ones(1 + 4 * 4, 3)
    grid[0] = 7
    resized = resize_grid_embedding(grid, 1 + 6 * 6)
    torch.testing.assert_close(resized, torch.cat([grid[:1], torch.ones(36, 3)]))


def test_text_positions_truncate_exactly_for_shorter_context() -> None:
    pos = torch.randn(77, 8)
    torch.testing.assert_close(resize_text_embedding(pos, 32), pos[:32])
    longer = resize_text_embedding(pos, 248)
    assert longer.shape == (248, 8)
    torch.testing.assert_close(longer[:20], pos[:20])
    torch.testing.assert_close(longer[-1], pos[-1])


# --- errors -------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        clipforge.create_model("tiny", pretrained=tmp_path / "nope.safetensors")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt' is an empty file"):
        clipforge.create_model("tiny", pretrained=tmp_path / "empty.pt")


def test_truncated_safetensors(tmp_path: Path) -> None:
    data = (MODELS / "tiny-vit.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors: not a readable safetensors"):
        clipforge.create_model("tiny", pretrained=tmp_path / "cut.safetensors")


def test_corrupt_pickle(tmp_path: Path) -> None:
    (tmp_path / "junk.bin").write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="junk.bin: cannot read checkpoint"):
        clipforge.create_model("tiny", pretrained=tmp_path / "junk.bin")


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1), "args": argparse.Namespace(lr=1)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: cannot read checkpoint"):
        clipforge.create_model("tiny", pretrained=tmp_path / "evil.pt")


def test_state_dict_that_fits_no_architecture_names_keys(tmp_path: Path) -> None:
    weights = load_file(MODELS / "tiny-vit.safetensors")
    del weights["visual.ln_post.weight"]
    weights["visual.extra"] = torch.zeros(1)
    save_file(weights, tmp_path / "broken.safetensors")
    with pytest.raises(CheckpointError) as err:
        clipforge.create_model(_config_of("tiny-vit"), pretrained=tmp_path / "broken.safetensors")
    message = str(err.value)
    assert "broken.safetensors" in message
    assert "missing keys ['visual.ln_post.weight']" in message
    assert "unexpected keys ['visual.extra']" in message


def test_wrong_architecture_reports_shapes() -> None:
    with pytest.raises(CheckpointError, match=r"shape mismatches .*checkpoint \(32, 32\) vs model"):
        clipforge.create_model("tiny", pretrained=MODELS / "tiny-vit.safetensors")


def test_unrecognisable_state_dict(tmp_path: Path) -> None:
    torch.save({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="cannot infer a CLIP architecture.*ln_final"):
        clipforge.create_model(tmp_path / "other.pt")


def test_bad_config_in_directory(tmp_path: Path) -> None:
    clipforge.save_model(clipforge.create_model("tiny"), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text('{"model_cfg": {"embed_dim": 8, "colour": 1}}')
    with pytest.raises(ValueError, match=r"config.json: unknown key\(s\) \['colour'\]"):
        clipforge.create_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: not valid JSON"):
        clipforge.create_model(tmp_path / "m")


def test_hf_state_dict_without_config_is_explained(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes((MODELS / "tiny-hf-clip" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="pass the directory that holds both"):
        clipforge.create_model(target)


# --- hf-hub: ------------------------------------------------------------------------------


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hf_hub_offline_says_how_to_pass_a_local_file(offline_hub: Path) -> None:
    with pytest.raises(PretrainedNotAvailableError) as err:
        clipforge.create_model("ViT-B-32", pretrained="hf-hub:laion/CLIP-ViT-B-32-laion2B")
    message = str(err.value)
    assert "cannot fetch 'hf-hub:laion/CLIP-ViT-B-32-laion2B'" in message
    assert "pass the local file" in message


def test_hf_hub_reads_cached_snapshot(offline_hub: Path) -> None:
    """The real hub code path, on a cache laid out the way huggingface_hub writes it."""
    repo = offline_hub / "models--org--tiny-clip"
    snapshot = repo / "snapshots" / ("a" * 40)
    model = clipforge.create_model(MODELS / "tiny-vit.safetensors")
    clipforge.models.save_openclip(model, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    _assert_matches_reference(clipforge.create_model("hf-hub:org/tiny-clip"), "tiny-vit")


# --- parity with transformers, reference models built in the test ------------------------

# Tiny Hugging Face CLIP variants: activation, image and patch size, widths, heads, depths and
# projection width all differ, so a name or shape mapped wrong in the conversion shows up.
HF_VARIANTS = {
    "quickgelu-32px-p8": dict(act="quick_gelu", image=32, patch=8, vision=(64, 4, 2),
                              text=(32, 4, 2), proj=16, context=77),
    "gelu-48px-p16": dict(act="gelu", image=48, patch=16, vision=(48, 3, 1),
                          text=(64, 2, 3), proj=24, context=77),
    "gelu-30px-p6-short-context": dict(act="gelu", image=30, patch=6, vision=(32, 2, 2),
                                       text=(48, 3, 1), proj=8, context=20),
}  # fmt: skip


def _hf_config(transformers: Any, variant: dict) -> Any:  # transformers is an optional import
    (v_width, v_heads, v_layers), (t_width, t_heads, t_layers) = variant["vision"], variant["text"]
    return transformers.CLIPConfig(
        projection_dim=variant["proj"],
        logit_scale_init_value=2.0,
        text_config=dict(hidden_act=variant["act"], hidden_size=t_width, intermediate_size=4 * t_width,
                         num_attention_heads=t_heads, num_hidden_layers=t_layers,
                         max_position_embeddings=variant["context"], vocab_size=49408),
        vision_config=dict(hidden_act=variant["act"], hidden_size=v_width,
                           intermediate_size=4 * v_width, num_attention_heads=v_heads,
                           num_hidden_layers=v_layers, image_size=variant["image"],
                           patch_size=variant["patch"]),
    )  # fmt: skip


def _jitter_vectors(module: torch.nn.Module) -> None:
    """Both libraries start norms at 1 and biases at 0; noise makes a swapped one visible."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in module.parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))


def _parity_inputs(image_size: int, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    pixels = torch.randn(3, 3, image_size, image_size, generator=generator)
    tokens = torch.zeros(3, context, dtype=torch.long)
    tokens[:, 0] = 49406
    tokens[:, 1:9] = torch.randint(1, 49000, (3, 8), generator=generator)
    for row, end in enumerate((3, 9, context - 1)):  # the last row fills the whole context
        tokens[row, end] = 49407
        tokens[row, end + 1 :] = 0
    return pixels, tokens


def _hf_features(hf: Any, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple:
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=pixels)
        text = hf.get_text_features(input_ids=tokens)
    # transformers 5 returns a model output whose pooler_output holds the projected features.
    image = image if torch.is_tensor(image) else image.pooler_output
    text = text if torch.is_tensor(text) else text.pooler_output
    return image, text


def _assert_same_as_hf(model: clipforge.CLIP, hf: Any, spec: dict) -> None:
    """Image and text features and the logit scale agree on the same pixels and tokens."""
    pixels, tokens = _parity_inputs(spec["image"], spec["context"])
    image, text = _features(model, {"pixels": pixels, "tokens": tokens})
    hf_image, hf_text = _hf_features(hf, pixels, tokens)
    torch.testing.assert_close(image, hf_image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(text, hf_text, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.logit_scale.detach(), hf.logit_scale.detach())


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_hf_clipmodel_built_in_test_loads_with_same_features(variant: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    spec = HF_VARIANTS[variant]
    torch.manual_seed(0)
    hf = transformers.CLIPModel(_hf_config(transformers, spec)).eval()
    _jitter_vectors(hf)
    hf.save_pretrained(tmp_path / "hf")

    model = clipforge.create_model(tmp_path / "hf").eval()
    assert model.config.quick_gelu == (spec["act"] == "quick_gelu")
    assert model.config.embed_dim == spec["proj"]
    _assert_same_as_hf(model, hf, spec)


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_save_hf_of_built_model_loads_in_transformers(variant: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    spec = HF_VARIANTS[variant]
    torch.manual_seed(0)
    config = clipforge.models.convert.hf_config_to_clipforge(
        _hf_config(transformers, spec).to_dict()
    ).replace(init_logit_scale=1.5)
    model = clipforge.create_model(config).eval()
    _jitter_vectors(model)
    clipforge.models.save_hf(model, tmp_path / "hf")

    hf = transformers.CLIPModel.from_pretrained(tmp_path / "hf").eval()
    _assert_same_as_hf(model, hf, spec)
