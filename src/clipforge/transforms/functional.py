"""Pure image operations behind the transforms: geometry on PIL images, colour, tensor conversion.

The geometry follows torchvision's PIL code path bit for bit (that is what OpenCLIP runs), so
every operation works on the image in its original mode: Pillow resamples "P" images with
NEAREST, "RGBA"/"LA" with premultiplied alpha and "L" in one channel, and converting to RGB first
would give different pixels. Conversion to RGB happens last, in :func:`to_rgb`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageEnhance

# 65535 / 257 == 255 exactly, so this maps the full 16-bit range onto the full 8-bit range.
_U16_TO_U8 = 257.0


def resize_to(img: Image.Image, width: int, height: int, resample: Image.Resampling) -> Image.Image:
    """Resize to exactly (width, height); an image already that size is returned untouched."""
    if img.size == (width, height):
        return img
    return img.resize((width, height), resample)


def resize_shortest(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize so the short side is ``size``, with torchvision's rule for the long side.

    torchvision truncates ``size * long / short`` with ``int()`` rather than rounding, so a
    500x300 image becomes 373x224 (373.33 truncated); rounding would shift the crop by a pixel.
    """
    width, height = img.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    if width <= height:
        return resize_to(img, size, new_long, resample)
    return resize_to(img, new_long, size, resample)


def resize_longest(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize so the long side is ``size`` keeping the aspect ratio (OpenCLIP's "longest" mode).

    Sides are rounded with Python's ``round`` as OpenCLIP does; a side is kept at least one pixel
    so that extreme aspect ratios (1x1000) still produce an image instead of failing in Pillow.
    """
    width, height = img.size
    ratio = max(width / size, height / size)
    new_width = max(1, round(width / ratio))
    new_height = max(1, round(height / ratio))
    return resize_to(img, new_width, new_height, resample)


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
    ops = (
        lambda im: ImageEnhance.Brightness(im).enhance(factors[0]),
        lambda im: ImageEnhance.Contrast(im).enhance(factors[1]),
        lambda im: ImageEnhance.Color(im).enhance(factors[2]),
        lambda im: adjust_hue(im, shift),
    )
    for index in torch.randperm(4, generator=generator).tolist():
        if amounts[index] > 0:
            img = ops[index](img)
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
