"""Every registered config builds and trains; model options behave; configs validate."""

import dataclasses

import pytest
import torch

import clipforge
from clipforge.models import CLIPConfig, ConfigError, get_model_config

# Configs too large for a CPU test at full size. They are checked with reduced widths and
# depths, keeping image size, patch size and tower type, so the architecture code still runs.
LARGE = {"ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-bigG-14", "RN50x4", "RN50x16", "RN50x64"}
# Full-size configs that take several seconds each on 2 cores: in the slow tier. ViT-B-32 and
# RN50 stay in the default run; a -quickgelu variant differs from its base only in activation.
FULL_SIZE_SLOW = {"ViT-B-16", "RN101", "ViT-B-32-quickgelu", "RN50-quickgelu"}


def _base(name: str) -> str:
    return name.removesuffix("-quickgelu")


def _test_config(name: str) -> CLIPConfig:
    cfg = get_model_config(name)
    if _base(name) not in LARGE:
        return cfg
    vision = {"width": 64, "head_width": 32}
    vision["layers"] = (1, 1, 1, 1) if cfg.vision_cfg.is_resnet else 2
    if cfg.vision_cfg.is_resnet:
        vision["width"] = 16
    return cfg.replace(
        embed_dim=32, vision_cfg=vision, text_cfg={"width": 32, "heads": 2, "layers": 2}
    )


def _params(name: str) -> list:
    slow = name in FULL_SIZE_SLOW or _base(name) in FULL_SIZE_SLOW
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(name, marks=marks, id=name)


def _inputs(model: clipforge.CLIP, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    size = model.image_size
    pixels = torch.randn(batch, 3, size, size)
    tokens = torch.zeros(batch, model.context_length, dtype=torch.long)
    tokens[:, 0] = 49406
    tokens[:, 1:6] = torch.randint(1, 49000, (batch, 5))
    tokens[0, 6], tokens[1, 4] = 49407, 49407
    return pixels, tokens


def _loss(out: dict) -> torch.Tensor:
    logits = out["logit_scale"] * out["image_features"] @ out["text_features"].t()
    target = torch.arange(logits.shape[0])
    return torch.nn.functional.cross_entropy(logits, target) + out["image_features"].sum()


@pytest.mark.parametrize("name", [_params(n) for n in clipforge.list_models()])
def test_registered_config_builds_trains_and_checkpoints(name: str) -> None:
    cfg = _test_config(name)
    model = clipforge.create_model(cfg)
    pixels, tokens = _inputs(model)

    model.eval()  # batch norms use running statistics: gradients compare exactly below
    out = model(pixels, tokens)
    assert out["image_features"].shape == (2, cfg.embed_dim)
    assert out["text_features"].shape == (2, cfg.embed_dim)
    assert (
        torch.isfinite(out["image_features"]).all() and torch.isfinite(out["text_features"]).all()
    )
    torch.testing.assert_close(out["image_features"].norm(dim=-1), torch.ones(2))
    _loss(out).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    plain, plain_grads = out, {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    model.set_grad_checkpointing(True)
    checkpointed = model(pixels, tokens)
    _loss(checkpointed).backward()
    for key in ("image_features", "text_features"):
        torch.testing.assert_close(checkpointed[key], plain[key], rtol=1e-5, atol=1e-6)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain_grads[n], rtol=1e-4, atol=1e-6, msg=n)


def test_registry_has_the_required_names() -> None:
    required = {"ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14", "ViT-bigG-14"}
    required |= {"RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "tiny", "small"}
    required |= {f"{n}-quickgelu" for n in required - {"tiny", "small"}}
    assert required <= set(clipforge.list_models())


def test_real_sizes_of_large_configs() -> None:
    """The reduced test models stand in for these; their real parameter counts are known."""
    # Counted from the configs' shapes without allocating: bigG alone is ~2.5 B parameters.
    with torch.device("meta"):
        models = {n: clipforge.CLIP(get_model_config(n)) for n in LARGE}
    sizes = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    assert 420e6 < sizes["ViT-L-14"] < 440e6
    assert 980e6 < sizes["ViT-H-14"] < 1000e6
    assert 2.5e9 < sizes["ViT-bigG-14"] < 2.6e9
    assert 600e6 < sizes["RN50x64"] < 640e6


def test_text_encoding_skips_padding_columns() -> None:
    model = clipforge.create_model("tiny").eval()
    _, tokens = _inputs(model)
    seen = []
    model.transformer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    with torch.no_grad():
        trimmed = model.encode_text(tokens)
        junk = tokens.clone()
        junk[0, 7:], junk[1, 5:] = 123, 456  # after each end-of-text token: must not matter
        torch.testing.assert_close(model.encode_text(junk), trimmed)
    assert seen[0][1] == 7  # longest row: start + 5 words + end


def test_patch_dropout_only_in_training() -> None:
    model = clipforge.create_model("tiny", patch_dropout=0.5)
    pixels, _ = _inputs(model)
    seen = []
    model.visual.transformer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    model.train()(pixels)
    model.eval()(pixels)
    tokens = (64 // 8) ** 2
    assert seen[0][1] == 1 + tokens // 2
    assert seen[1][1] == 1 + tokens


def test_lock_towers_freeze_groups() -> None:
    model = clipforge.create_model("tiny")
    model.lock_image_tower(unlocked_groups=1)
    trainable = {n for n, p in model.visual.named_parameters() if p.requires_grad}
    assert trainable == {"proj"}
    model.lock_text_tower(unlocked_layers=2)
    text_trainable = {
        n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("visual")
    }
    assert "ln_final.weight" in text_trainable and "text_projection" in text_trainable
    assert any(n.startswith("transformer.resblocks.3.") for n in text_trainable)
    assert not any(n.startswith("transformer.resblocks.2.") for n in text_trainable)
    assert "token_embedding.weight" not in text_trainable


def test_locked_resnet_keeps_batchnorm_statistics() -> None:
    model = clipforge.create_model("tiny-rn")
    model.lock_image_tower()
    model.train()
    before = model.visual.bn1.running_mean.clone()
    model.encode_image(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(model.visual.bn1.running_mean, before)
    assert not any(p.requires_grad for p in model.visual.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_weights(precision: str) -> None:
    model = clipforge.create_model("tiny", precision=precision).eval()
    pixels, tokens = _inputs(model)
    dtype = model.visual.conv1.weight.dtype
    with torch.no_grad():
        out = model(pixels.to(dtype), tokens)
    assert out["image_features"].dtype == dtype
    assert torch.isfinite(out["image_features"].float()).all()


def test_bf16_autocast_matches_fp32() -> None:
    model = clipforge.create_model("tiny", precision="amp_bf16").eval()
    pixels, tokens = _inputs(model)
    with torch.no_grad():
        ref = model(pixels, tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = model(pixels, tokens)
    cos = (ref["image_features"] * amp["image_features"].float()).sum(-1)
    assert (cos > 0.99).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vision_cfg": {"patch_szie": 16}}, "unknown key(s) ['patch_szie']"),
        ({"vision_cfg": {"patch_size": 15}}, "patch_size=15 does not divide image_size=224"),
        ({"text_cfg": {"heads": 7}}, "heads=7 does not divide width=512"),
        ({"embed_dim": 0}, "embed_dim=0 must be > 0"),
        ({"embed_dim": "512"}, "embed_dim='512' has the wrong type"),
        ({"vision_cfg": {"layers": [3, 4, 6]}}, "needs 4 stage depths"),
        ({"vision_cfg": {"patch_dropout": 1.0}}, "patch_dropout=1.0 must be in [0, 1)"),
        ({"bogus": 1}, "unknown key(s) ['bogus']"),
    ],
)
def test_config_errors_name_the_key(change: dict, message: str) -> None:
    data = get_model_config("ViT-B-32").to_dict()
    for key, value in change.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    with pytest.raises(ConfigError) as err:
        CLIPConfig.from_dict(data)
    assert message in str(err.value)


def test_config_round_trips_through_json_form() -> None:
    for name in ("ViT-bigG-14", "RN50x4-quickgelu", "tiny"):
        cfg = get_model_config(name)
        assert CLIPConfig.from_dict(cfg.to_dict()) == cfg
    assert dataclasses.is_dataclass(cfg)


def test_unknown_model_name_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match="did you mean ViT-B-32"):
        clipforge.create_model("ViT-B32")
    with pytest.raises(FileNotFoundError, match="neither a registered name nor an existing file"):
        clipforge.create_model("no/such/model.safetensors")


def test_input_shapes_are_checked() -> None:
    model = clipforge.create_model("tiny")
    with pytest.raises(ValueError, match=r"expects pixels of shape \(B, 3, 64, 64\)"):
        model.encode_image(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="context length is 32"):
        model.encode_text(torch.zeros(1, 77, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model.encode_text(torch.zeros(1, 8))
