"""CLIP's image transforms on Pillow alone: PIL image in, normalised (3, S, S) float32 tensor out.

The inference transform reproduces OpenCLIP's ``image_transform(size, is_train=False)`` exactly
(the reference tensors in ``tests/fixtures/preprocess`` are matched to 1e-6), because a model
evaluated on differently resampled pixels loses accuracy for no visible reason. Its geometry
follows torchvision's PIL code path bit for bit, so every operation works on the image in its
original mode: Pillow resamples "P" images with NEAREST, "RGBA"/"LA" with premultiplied alpha
and "L" in one channel, and converting to RGB first would give different pixels; conversion to
RGB comes last, in :func:`to_rgb`.

The training transform follows OpenCLIP's CLIP recipe, with every random draw taken from one
``torch.Generator`` so that a run can be replayed. :class:`PreprocessConfig` rejects unknown
keys and bad values: a typo such as ``"resize_mod"`` would otherwise silently fall back to the
default and feed the model differently framed images than it was trained on.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from clipforge.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from clipforge.typed_config import build_dataclass, to_plain

# 65535 / 257 == 255 exactly, so this maps the full 16-bit range onto the full 8-bit range.
_U16_TO_U8 = 257.0


def resize_shortest(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize so the short side is ``size``, with torchvision's rule for the long side.

    torchvision truncates ``size * long / short`` with ``int()`` rather than rounding, so a
    500x300 image becomes 373x224 (373.33 truncated); rounding would shift the crop by a pixel.
    """
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    if width <= height:
        return img.resize((size, new_long), resample)
    return img.resize((new_long, size), resample)


def resize_longest(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize so the long side is ``size`` keeping the aspect ratio (OpenCLIP's "longest" mode).

    Sides are rounded with Python's ``round`` as OpenCLIP does; a side is kept at least one pixel
    so that extreme aspect ratios (1x1000) still produce an image instead of failing in Pillow.
    """
    width, height = img.size
    ratio = max(width / size, height / size)
    new_width = max(1, round(width / ratio))
    new_height = max(1, round(height / ratio))
    return img.resize((new_width, new_height), resample)


def center_crop_or_pad(img: Image.Image, size: int) -> Image.Image:
    """Centre crop to ``size``x``size``, padding with zeros where the image is smaller.

    Offsets use ``int(round((side - size) / 2.0))`` with Python's round-half-to-even, as
    torchvision does: 149 spare pixels put the crop at 74, not 75. Where a side is too small the
    image is centred with the extra pixel (odd padding) on the right/bottom. Pillow's ``crop``
    fills outside the image with zeros in the image's own mode, which gives the same pixels as
    torchvision's pad-then-crop: zero in every band (palette index 0 for "P" images).
    """
    width, height = img.size
    left = -((size - width) // 2) if size > width else int(round((width - size) / 2.0))
    top = -((size - height) // 2) if size > height else int(round((height - size) / 2.0))
    if img.size == (size, size):
        return img
    return img.crop((left, top, left + size, top + size))


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Pillow's own conversion clips 16-bit values ("I;16*", "I") at 255, which turns almost every
    16-bit image white; those are scaled from 0..65535 to 0..255 instead. Everything else ("L",
    "LA", "P", "RGBA", "CMYK", ...) uses Pillow's conversion, as OpenCLIP does: alpha is dropped,
    not composited.
    """
    if img.mode == "RGB":
        return img
    if img.mode == "I" or img.mode.startswith("I;16"):
        levels = np.asarray(img).astype(np.float32)  # (H, W); "I;16B" arrives big-endian
        gray = np.rint(np.clip(levels, 0.0, 65535.0) / _U16_TO_U8).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    return img.convert("RGB")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """An image of any mode as a float32 (3, H, W) tensor in [0, 1], channels in RGB order.

    The division by 255 is done in float32 like torchvision's ``to_tensor``, so results match it
    to the last bit.
    """
    pixels = torch.from_numpy(np.array(to_rgb(img), dtype=np.uint8))  # (H, W, 3) uint8
    chw = pixels.permute(2, 0, 1).to(torch.float32, memory_format=torch.contiguous_format)
    return chw.div_(255.0)  # (3, H, W)


def adjust_hue(img: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue of an RGB image by ``shift`` turns (in [-0.5, 0.5]); the wheel wraps."""
    hue, saturation, value = img.convert("HSV").split()
    steps = round(shift * 255)
    rotated = (np.asarray(hue).astype(np.int16) + steps) % 256  # (H, W)
    new_hue = Image.fromarray(rotated.astype(np.uint8))
    return Image.merge("HSV", (new_hue, saturation, value)).convert("RGB")


def color_jitter(
    img: Image.Image,
    amounts: tuple[float, float, float, float],
    generator: torch.Generator | None,
) -> Image.Image:
    """Random brightness, contrast, saturation and hue changes of an RGB image, in random order.

    An amount ``a`` > 0 of the first three draws a multiplicative factor in
    ``[max(0, 1 - a), 1 + a]`` (1.0 = unchanged); a hue amount draws a shift in ``[-a, a]``
    turns. The order is drawn too, because the operations do not commute; an amount of 0
    leaves its operation out.
    """
    factors = [
        uniform(max(0.0, 1.0 - amount), 1.0 + amount, generator) if amount > 0 else 1.0
        for amount in amounts[:3]
    ]
    shift = uniform(-amounts[3], amounts[3], generator) if amounts[3] > 0 else 0.0
    enhancers = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
    for index in torch.randperm(4, generator=generator).tolist():
        if amounts[index] > 0 and index == 3:
            img = adjust_hue(img, shift)
        elif amounts[index] > 0:
            img = enhancers[index](img).enhance(factors[index])
    return img


def uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """One float drawn uniformly from [low, high) with ``generator`` (torch's global RNG if None)."""
    return low + (high - low) * torch.rand((), dtype=torch.float64, generator=generator).item()


def random_resized_crop_box(
    width: int,
    height: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
) -> tuple[int, int, int, int]:
    """Sample a crop box ``(left, top, crop_width, crop_height)`` the way RandomResizedCrop does.

    The area fraction is uniform in ``scale`` and the aspect ratio log-uniform in ``ratio``; after
    10 draws that do not fit, it falls back to the largest centred crop whose aspect ratio is
    within ``ratio``, so extreme panoramas still give a valid box.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * uniform(scale[0], scale[1], generator)
        aspect = math.exp(uniform(log_low, log_high, generator))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (), generator=generator).item())
            left = int(torch.randint(0, width - crop_w + 1, (), generator=generator).item())
            return left, top, crop_w, crop_h
    in_ratio = width / height
    crop_w, crop_h = width, height
    if in_ratio < ratio[0]:
        crop_h = max(1, int(round(width / ratio[0])))
    elif in_ratio > ratio[1]:
        crop_w = max(1, int(round(height * ratio[1])))
    return (width - crop_w) // 2, (height - crop_h) // 2, crop_w, crop_h


# Pillow filters behind the interpolation names. Pillow still picks NEAREST for "P" and "1"
# images whatever is asked, exactly as torchvision's PIL path does.
PIL_RESAMPLE: dict[str, Image.Resampling] = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

# shortest: resize the short side to the size, centre crop (CLIP's own preprocessing).
# longest: resize the long side to the size, pad to a square with zeros (keeps the whole image).
# squash: resize both sides to the size, ignoring the aspect ratio.
RESIZE_MODES: tuple[str, ...] = ("shortest", "longest", "squash")


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """How images are framed and normalised for a model; ``image_size`` is the square side S."""

    image_size: int = 224
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"PreprocessConfig.image_size={size!r} must be an int > 0")
        # Lists arrive from JSON/YAML; store tuples so the frozen config stays hashable.
        object.__setattr__(self, "mean", _three_floats("mean", self.mean))
        object.__setattr__(self, "std", _three_floats("std", self.std))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"PreprocessConfig.std={self.std!r}: every value must be > 0")
        for name, known in (("interpolation", sorted(PIL_RESAMPLE)), ("resize_mode", RESIZE_MODES)):
            if getattr(self, name) not in known:
                raise ValueError(
                    f"PreprocessConfig.{name}={getattr(self, name)!r} must be one of {list(known)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe form (lists, not tuples: ``yaml.safe_dump`` rejects tuples)."""
        return to_plain(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys are an error."""
        return build_dataclass(cls, data, "PreprocessConfig", ValueError)


def _three_floats(name: str, value: Any) -> tuple[float, float, float]:
    """One finite float per RGB channel, or a ValueError naming the field."""
    values = tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(values) != 3 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise ValueError(
            f"PreprocessConfig.{name}={value!r} must be 3 finite numbers, one per RGB channel"
        )
    return (float(values[0]), float(values[1]), float(values[2]))


ColorJitterAmounts = float | tuple[float, float, float] | tuple[float, float, float, float]


class _NormalizingTransform:
    """What both transforms share: their ``frame`` of the image, then (x - mean) / std per channel."""

    def __init__(self, config: PreprocessConfig) -> None:
        if not isinstance(config, PreprocessConfig):
            raise TypeError(
                f"{type(self).__name__} needs a PreprocessConfig, got {type(config).__name__}; "
                "use image_transform(size) to build one from an int"
            )
        self.config = config
        self._resample = PIL_RESAMPLE[config.interpolation]
        # float32 constants, subtracted then divided, exactly as torchvision's Normalize does.
        self._mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if not isinstance(img, Image.Image):
            raise TypeError(
                f"{type(self).__name__} takes a PIL.Image.Image, got {type(img).__name__}"
            )
        return to_tensor(self.frame(img)).sub_(self._mean).div_(self._std)  # (3, S, S)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class InferenceTransform(_NormalizingTransform):
    """Deterministic preprocessing for evaluation and embedding: ``(3, S, S)`` float32 output,
    framed in the image's own mode and converted to RGB after the crop (see the module)."""

    def frame(self, img: Image.Image) -> Image.Image:
        """Resize and crop/pad to ``S``x``S`` according to ``resize_mode``, keeping the mode."""
        size = self.config.image_size
        if self.config.resize_mode == "squash":
            return img.resize((size, size), self._resample)
        if self.config.resize_mode == "longest":
            return center_crop_or_pad(resize_longest(img, size, self._resample), size)
        return center_crop_or_pad(resize_shortest(img, size, self._resample), size)


class TrainTransform(_NormalizingTransform):
    """OpenCLIP's CLIP training augmentation: random resized crop, optional colour jitter and
    grayscale, then the same normalisation as inference. ``resize_mode`` is not used: the random
    crop replaces it, as in OpenCLIP.

    ``color_jitter`` is one amount for brightness, contrast and saturation, or a 3-tuple of them,
    or a 4-tuple with a hue amount (<= 0.5 turns), applied as :func:`color_jitter` draws them
    with probability ``color_jitter_prob``. ``grayscale_prob`` makes the image gray in three
    channels.

    ``generator`` makes the augmentations reproducible: a ``torch.Generator``, or an int seed for a
    new one. With ``None`` the draws come from torch's global RNG, which is what multi-worker
    DataLoaders need: each worker reseeds that RNG differently, whereas a passed generator is
    copied into every worker and all workers would then draw the same crops.
    """

    def __init__(
        self,
        config: PreprocessConfig,
        *,
        scale: tuple[float, float] = (0.9, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        color_jitter: ColorJitterAmounts | None = None,
        color_jitter_prob: float = 0.8,
        grayscale_prob: float = 0.0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        super().__init__(config)
        self.scale = _check_range("scale", scale, upper=1.0)
        self.ratio = _check_range("ratio", ratio, upper=None)
        self.color_jitter = _jitter_amounts(color_jitter)
        self.color_jitter_prob = _check_probability("color_jitter_prob", color_jitter_prob)
        self.grayscale_prob = _check_probability("grayscale_prob", grayscale_prob)
        if isinstance(generator, int) and not isinstance(generator, bool):
            generator = torch.Generator().manual_seed(generator)
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"TrainTransform.generator must be a torch.Generator, an int seed or None, "
                f"got {type(generator).__name__}"
            )
        self.generator = generator

    def _happens(self, probability: float) -> bool:
        return probability > 0.0 and uniform(0.0, 1.0, self.generator) < probability

    def frame(self, img: Image.Image) -> Image.Image:
        """A random resized crop to ``S``x``S`` in RGB, then the colour augmentations."""
        size = self.config.image_size
        width, height = img.size
        left, top, crop_w, crop_h = random_resized_crop_box(
            width, height, self.scale, self.ratio, self.generator
        )
        img = img.crop((left, top, left + crop_w, top + crop_h))
        rgb = to_rgb(img.resize((size, size), self._resample))
        if self.color_jitter is not None and self._happens(self.color_jitter_prob):
            rgb = color_jitter(rgb, self.color_jitter, self.generator)
        if self._happens(self.grayscale_prob):
            rgb = rgb.convert("L").convert("RGB")
        return rgb

    def __repr__(self) -> str:
        return (
            f"TrainTransform({self.config!r}, scale={self.scale}, ratio={self.ratio}, "
            f"color_jitter={self.color_jitter}, color_jitter_prob={self.color_jitter_prob}, "
            f"grayscale_prob={self.grayscale_prob})"
        )


def image_transform(
    config: PreprocessConfig | int,
    is_train: bool = False,
    **augment: Any,
) -> InferenceTransform | TrainTransform:
    """Build the transform for a model's config (or a bare image size with CLIP defaults).

    ``augment`` holds :class:`TrainTransform` options and is only valid with ``is_train=True``;
    silently dropping them at inference would hide a wiring mistake.
    """
    cfg = config if isinstance(config, PreprocessConfig) else PreprocessConfig(image_size=config)
    if is_train:
        return TrainTransform(cfg, **augment)
    if augment:
        raise ValueError(
            f"image_transform: augmentation options {sorted(augment)} need is_train=True"
        )
    return InferenceTransform(cfg)


def _check_range(
    name: str, value: tuple[float, float], *, upper: float | None
) -> tuple[float, float]:
    """A (low, high) pair with 0 < low <= high (<= upper), or a ValueError naming it."""
    bound = "" if upper is None else f" <= {upper}"
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"TrainTransform.{name}={value!r} must be a (low, high) pair") from err
    if not (0.0 < low <= high) or (upper is not None and high > upper):
        raise ValueError(f"TrainTransform.{name}={value!r} must satisfy 0 < low <= high{bound}")
    return low, high


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"TrainTransform.{name}={value!r} must be in [0, 1]")
    return float(value)


def _jitter_amounts(
    value: ColorJitterAmounts | None,
) -> tuple[float, float, float, float] | None:
    """Normalise ``color_jitter`` to (brightness, contrast, saturation, hue) or None (off)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        values = [float(value)] * 3
    elif isinstance(value, (tuple, list)) and len(value) in (3, 4):
        values = [float(v) for v in value]
    else:
        raise ValueError(
            f"TrainTransform.color_jitter={value!r} must be a number, or a 3- or 4-tuple "
            "(brightness, contrast, saturation[, hue])"
        )
    brightness, contrast, saturation, hue = values + [0.0] * (4 - len(values))
    if min(brightness, contrast, saturation) < 0 or not 0.0 <= hue <= 0.5:
        raise ValueError(
            f"TrainTransform.color_jitter={value!r}: amounts must be >= 0 and hue in [0, 0.5]"
        )
    return brightness, contrast, saturation, hue
