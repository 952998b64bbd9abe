"""Tests of clipforge.transforms: parity with OpenCLIP's golden tensors, geometry rules written
out by hand, training determinism, image loading errors and config validation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from clipforge.transforms import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ImageDecodeError,
    InferenceTransform,
    PreprocessConfig,
    TrainTransform,
    image_transform,
    load_image,
    to_tensor,
)
from clipforge.transforms.pipelines import center_crop_or_pad, random_resized_crop_box

FIXTURES = Path(__file__).parent / "fixtures" / "preprocess"
FIXTURE_STEMS = sorted(p.stem for p in FIXTURES.glob("*.png"))
MEAN = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
STD = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "expected_224.safetensors")


def _random_image(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _assert_max_diff(actual: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    # Cheaper than torch.testing.assert_close on full images, and reports the number we care about.
    assert actual.shape == want.shape and actual.dtype == want.dtype
    diff = (actual - want).abs().max().item()
    assert diff <= tol, f"max abs diff {diff:.3g} > {tol:g}"


def _denormalize(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


# --- parity with OpenCLIP -------------------------------------------------------------------


def test_fixtures_cover_every_mode_and_a_small_image() -> None:
    images = [load_image(FIXTURES / f"{stem}.png") for stem in FIXTURE_STEMS]
    assert {img.mode for img in images} >= {"RGB", "L", "RGBA", "P"}
    assert any(min(img.size) < 224 and max(img.size) < 224 for img in images)


@pytest.mark.parametrize("stem", FIXTURE_STEMS)
def test_inference_matches_openclip(stem: str, expected: dict[str, torch.Tensor]) -> None:
    out = image_transform(224)(load_image(FIXTURES / f"{stem}.png"))
    assert out.dtype == torch.float32 and out.shape == (3, 224, 224) and out.is_contiguous()
    _assert_max_diff(out, expected[stem], 1e-6)


def test_rgba_and_palette_are_resized_before_rgb_conversion(
    expected: dict[str, torch.Tensor],
) -> None:
    # Converting first loses Pillow's premultiplied-alpha resize (RGBA) and its forced NEAREST
    # (P); this guards the order of operations, not just the end result.
    transform = image_transform(224)
    for stem in ("rgba_128x128", "palette_500x300"):
        converted_first = transform(load_image(FIXTURES / f"{stem}.png").convert("RGB"))
        assert (converted_first - expected[stem]).abs().max() > 0.1


# --- geometry rules -------------------------------------------------------------------------


def test_shortest_side_uses_truncated_long_side_and_half_even_crop() -> None:
    transform = InferenceTransform(PreprocessConfig(image_size=224))
    framed = transform.frame(_random_image("RGB", 500, 300))
    assert framed.size == (224, 224)
    resized = _random_image("RGB", 500, 300).resize((373, 224), Image.Resampling.BICUBIC)
    # int(224 * 500 / 300) = 373; (373 - 224) / 2 = 74.5 rounds half-to-even to 74.
    np.testing.assert_array_equal(np.asarray(framed), np.asarray(resized)[:, 74 : 74 + 224])


@pytest.mark.parametrize(("width", "left"), [(7, 2), (9, 2), (11, 4), (8, 2)])
def test_center_crop_offset_rounds_half_to_even(width: int, left: int) -> None:
    row = np.arange(width, dtype=np.uint8)[None, :].repeat(4, axis=0)  # (4, W), value = column
    cropped = np.asarray(center_crop_or_pad(Image.fromarray(row), 4))
    assert cropped[0, 0] == left


def test_center_crop_pads_small_image_with_zeros_centred() -> None:
    img = Image.fromarray(np.full((2, 3, 3), 200, dtype=np.uint8))  # 3 wide, 2 high
    out = np.asarray(center_crop_or_pad(img, 6))
    # Width: (6 - 3) // 2 = 1 column left, 2 right; height: 2 rows above, 2 below.
    mask = np.zeros((6, 6), dtype=bool)
    mask[2:4, 1:4] = True
    assert out.shape == (6, 6, 3)
    assert (out[mask] == 200).all() and (out[~mask] == 0).all()


def test_palette_padding_uses_palette_index_zero() -> None:
    img = Image.new("P", (2, 2), 1)
    img.putpalette([10, 20, 30, 250, 250, 250] + [0, 0, 0] * 254)
    out = np.asarray(center_crop_or_pad(img, 4).convert("RGB"))
    assert tuple(out[0, 0]) == (10, 20, 30) and tuple(out[1, 1]) == (250, 250, 250)


def test_small_image_in_longest_mode_is_padded_with_zero() -> None:
    cfg = PreprocessConfig(image_size=224, resize_mode="longest")
    out = InferenceTransform(cfg)(load_image(FIXTURES / "small_90x40.png"))
    # 90x40 -> 224 x round(40 * 224 / 90) = 224 x 100; 62 padding rows above and below.
    assert out.shape == (3, 224, 224)
    pad_value = (-MEAN / STD).expand(3, 62, 224)
    _assert_max_diff(out[:, :62], pad_value, 1e-6)
    _assert_max_diff(out[:, 162:], pad_value, 1e-6)
    assert not torch.allclose(out[:, 62:162], (-MEAN / STD).expand(3, 100, 224))


@pytest.mark.parametrize("mode", ["squash", "longest", "shortest"])
@pytest.mark.parametrize("size", [(500, 300), (40, 90), (1000, 3), (17, 17)])
def test_every_resize_mode_gives_a_square(mode: str, size: tuple[int, int]) -> None:
    cfg = PreprocessConfig(image_size=32, resize_mode=mode)
    assert InferenceTransform(cfg)(_random_image("RGB", *size)).shape == (3, 32, 32)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear", "nearest"])
def test_squash_is_a_plain_resize(interpolation: str) -> None:
    img = _random_image("RGB", 50, 30)
    cfg = PreprocessConfig(image_size=16, resize_mode="squash", interpolation=interpolation)
    resample = getattr(Image.Resampling, interpolation.upper())
    want = (to_tensor(img.resize((16, 16), resample)) - MEAN) / STD
    _assert_max_diff(InferenceTransform(cfg)(img), want, 1e-6)


# --- modes and tensor conversion -------------------------------------------------------------


def test_sixteen_bit_images_are_scaled_not_clipped() -> None:
    levels = np.array([[0, 257 * 100, 65535, 30000]], dtype=np.uint16)
    img = Image.fromarray(levels)
    assert img.mode == "I;16"
    for variant in (img, img.convert("I")):
        out = to_tensor(variant)
        assert out.shape == (3, 1, 4)
        want = torch.tensor([0, 100, 255, round(30000 / 257)], dtype=torch.float32) / 255
        _assert_max_diff(out, want.expand(3, 1, 4), 0.0)


@pytest.mark.parametrize("mode", ["L", "LA", "CMYK", "RGBA", "P", "1"])
def test_other_modes_convert_like_pillow(mode: str) -> None:
    img = _random_image(mode, 9, 7)
    want = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
    _assert_max_diff(to_tensor(img), want, 0.0)
    assert image_transform(8)(img).shape == (3, 8, 8)


def test_transform_rejects_non_pil_input() -> None:
    with pytest.raises(TypeError, match="ndarray"):
        image_transform(8)(np.zeros((8, 8, 3), dtype=np.uint8))


# --- training transform ----------------------------------------------------------------------


def _train(seed: int | torch.Generator, **kwargs: object) -> TrainTransform:
    return TrainTransform(PreprocessConfig(image_size=32), generator=seed, **kwargs)


def test_train_transform_is_reproducible_for_a_seed() -> None:
    img = _random_image("RGB", 120, 80)

    def run(generator: int | torch.Generator) -> torch.Tensor:
        transform = _train(
            generator, color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.8, grayscale_prob=0.2
        )
        return torch.stack([transform(img) for _ in range(6)])  # (6, 3, 32, 32)

    first = run(7)
    _assert_max_diff(run(torch.Generator().manual_seed(7)), first, 0.0)
    assert not torch.equal(first[0], first[1])  # the draws advance between calls
    assert not torch.equal(run(8), first)


def test_train_transform_without_generator_follows_torch_global_seed() -> None:
    img = _random_image("RGB", 60, 90)
    transform = TrainTransform(PreprocessConfig(image_size=16), color_jitter=0.3)
    torch.manual_seed(3)
    a = transform(img)
    torch.manual_seed(3)
    _assert_max_diff(transform(img), a, 0.0)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_train_output_shape_and_range(mode: str) -> None:
    transform = _train(0, color_jitter=(0.5, 0.5, 0.5, 0.5), color_jitter_prob=1.0)
    out = transform(_random_image(mode, 70, 50))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    pixels = _denormalize(out)
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_grayscale_probability_one_gives_equal_channels() -> None:
    out = _denormalize(_train(0, grayscale_prob=1.0)(_random_image("RGB", 40, 40)))
    _assert_max_diff(out[0], out[1], 1e-6)
    _assert_max_diff(out[0], out[2], 1e-6)


def test_random_resized_crop_box_respects_scale_and_bounds() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        left, top, w, h = random_resized_crop_box(300, 200, (0.5, 1.0), (3 / 4, 4 / 3), generator)
        assert left >= 0 and left + w <= 300 and top >= 0 and top + h <= 200
        assert 0.49 <= w * h / (300 * 200) <= 1.0
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


def test_random_resized_crop_box_falls_back_to_centre_for_panoramas() -> None:
    # No draw fits a 1000x10 strip, so the largest centred crop with ratio 4/3 is taken.
    box = random_resized_crop_box(1000, 10, (0.9, 1.0), (3 / 4, 4 / 3), None)
    assert box == ((1000 - 13) // 2, 0, 13, 10)


def test_image_transform_dispatch() -> None:
    assert isinstance(image_transform(64), InferenceTransform)
    train = image_transform(PreprocessConfig(image_size=64), is_train=True, scale=(0.5, 1.0))
    assert isinstance(train, TrainTransform) and train.scale == (0.5, 1.0)
    with pytest.raises(ValueError, match="scale"):
        image_transform(64, scale=(0.5, 1.0))
    with pytest.raises(TypeError, match="colour_jitter"):
        image_transform(64, is_train=True, colour_jitter=0.4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scale": (0.0, 1.0)}, "scale"),
        ({"scale": (0.9, 0.5)}, "scale"),
        ({"ratio": (2.0, 1.0)}, "ratio"),
        ({"color_jitter": (0.1, 0.2)}, "color_jitter"),
        ({"color_jitter": (0.1, 0.1, 0.1, 0.7)}, "color_jitter"),
        ({"color_jitter_prob": 1.5}, "color_jitter_prob"),
        ({"grayscale_prob": -0.1}, "grayscale_prob"),
    ],
)
def test_train_options_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"TrainTransform.{field}="):
        TrainTransform(PreprocessConfig(), **kwargs)


# --- loading ---------------------------------------------------------------------------------


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    _random_image("RGBA", 12, 10).save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_image_keeps_mode_from_path_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    path.write_bytes(_png_bytes())
    for source in (path, str(path), _png_bytes()):
        img = load_image(source)
        assert img.mode == "RGBA" and img.size == (12, 10)


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    _random_image("RGB", 64, 64).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        (b"", "empty"),
        (_jpeg_bytes()[:400], "truncated"),
        (b"just some text, not pixels\n" * 10, "cannot identify"),
    ],
    ids=["missing", "zero-byte", "truncated-jpeg", "not-an-image"],
)
def test_load_image_errors_name_file_and_reason(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=f"(?i){reason}") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    if content is not None:
        with pytest.raises(ImageDecodeError, match=f"(?i)'shard-3/key-9'.*{reason}"):
            load_image(content, name="shard-3/key-9")


# --- config ----------------------------------------------------------------------------------


def test_config_round_trips_through_json() -> None:
    cfg = PreprocessConfig(image_size=336, interpolation="bilinear", resize_mode="squash")
    restored = PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert restored == cfg and isinstance(restored.mean, tuple)
    assert PreprocessConfig.from_dict({}) == PreprocessConfig()


def test_config_from_dict_names_unknown_keys() -> None:
    with pytest.raises(ValueError, match=r"\['fill_colour', 'resize_mod'\]"):
        PreprocessConfig.from_dict({"resize_mod": "squash", "fill_colour": 0, "image_size": 8})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": 224.0}, "image_size"),
        ({"image_size": True}, "image_size"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"mean": "abc"}, "mean"),
        ({"std": (0.5, 0.0, 0.5)}, "std"),
        ({"std": (0.5, float("nan"), 0.5)}, "std"),
        ({"interpolation": "lanczos"}, "interpolation"),
        ({"resize_mode": "crop"}, "resize_mode"),
    ],
)
def test_config_validation_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"PreprocessConfig.{field}="):
        PreprocessConfig(**kwargs)
