"""The inference and training transforms: PIL image in, normalised (3, S, S) float32 tensor out.

The inference transform reproduces OpenCLIP's ``image_transform(size, is_train=False)`` exactly
(the reference tensors in ``tests/fixtures/preprocess`` are matched to 1e-6), because a model
evaluated on differently resampled pixels loses accuracy for no visible reason. The training
transform follows OpenCLIP's CLIP recipe, with every random draw taken from one
``torch.Generator`` so that a run can be replayed. :class:`PreprocessConfig` rejects unknown
keys and bad values: a typo such as ``"resize_mod"`` would otherwise silently fall back to the
default and feed the model differently framed images than it was trained on.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from clipforge.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from clipforge.transforms.functional import (
    center_crop_or_pad,
    color_jitter,
    random_resized_crop_box,
    resize_longest,
    resize_shortest,
    resize_to,
    to_rgb,
    to_tensor,
    uniform,
)
from clipforge.typed_config import build_dataclass, to_plain

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
        if self.interpolation not in PIL_RESAMPLE:
            raise ValueError(
                f"PreprocessConfig.interpolation={self.interpolation!r} must be one of "
                f"{sorted(PIL_RESAMPLE)}"
            )
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"PreprocessConfig.resize_mode={self.resize_mode!r} must be one of "
                f"{list(RESIZE_MODES)}"
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
    """Deterministic preprocessing for evaluation and embedding: ``(3, S, S)`` float32 output.

    The geometry runs on the image in its original mode and RGB conversion comes after the crop,
    the same order as OpenCLIP/torchvision; converting first changes the pixels of palette, RGBA
    and grayscale images.
    """

    def frame(self, img: Image.Image) -> Image.Image:
        """Resize and crop/pad to ``S``x``S`` according to ``resize_mode``, keeping the mode."""
        size = self.config.image_size
        if self.config.resize_mode == "squash":
            return resize_to(img, size, size, self._resample)
        if self.config.resize_mode == "longest":
            return center_crop_or_pad(resize_longest(img, size, self._resample), size)
        return center_crop_or_pad(resize_shortest(img, size, self._resample), size)


class TrainTransform(_NormalizingTransform):
    """OpenCLIP's CLIP training augmentation: random resized crop, optional colour jitter and
    grayscale, then the same normalisation as inference. ``resize_mode`` is not used: the random
    crop replaces it, as in OpenCLIP.

    ``color_jitter`` is one amount for brightness, contrast and saturation, or a 3-tuple of them,
    or a 4-tuple with a hue amount (<= 0.5 turns); each is drawn per image as a factor in
    ``[max(0, 1 - a), 1 + a]`` (hue: a shift in ``[-a, a]``) and applied in a random order, with
    probability ``color_jitter_prob``. ``grayscale_prob`` makes the image gray in three channels.

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
        rgb = to_rgb(resize_to(img, size, size, self._resample))
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
