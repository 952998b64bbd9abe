"""Drawing a :class:`Scene` into an RGB image with anti-aliased edges.

Each object is drawn as a polygon into a small supersampled mask covering only its bounding
box, box-filtered down (``Image.reduce``) and used to paste the object's colour over the
background. Working per bounding box keeps a 64 px image well under a millisecond, and the
supersampling gives the soft edges of a real downscaled photo rather than jagged pixel art.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from clipforge.data.shapes.scene import Background, Scene, SceneObject
from clipforge.data.shapes.vocab import check_count

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
SUPERSAMPLE = 4
NOISE_CELLS = 6  # grid of the noise texture's blotches


def _regular(n: int, radius: float, start: float) -> np.ndarray:
    angles = start + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star() -> np.ndarray:
    outer = _regular(5, 1.0, -math.pi / 2)
    inner = _regular(5, 0.42, -math.pi / 2 + math.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(10, 2) + (0.0, 0.095)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    points = np.stack([x, y], axis=1)
    points -= (points.max(axis=0) + points.min(axis=0)) / 2
    return points / np.abs(points).max()


def _cross(arm: float = 0.32, reach: float = 0.95) -> np.ndarray:
    a, r = arm, reach
    return np.array(
        [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r), (-a, a), (-r, a)]
        + [(-r, -a), (-a, -a)]
    )


# Outlines in a unit box (x right, y down), each filling [-1, 1] about as much as the others.
UNIT_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular(40, 1.0, 0.0),
    "square": np.array([(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)]),
    "triangle": _regular(3, 1.1, -math.pi / 2) + (0.0, 0.275),
    "star": _star(),
    "hexagon": _regular(6, 1.0, 0.0),
    "heart": _heart(),
    "cross": _cross(),
    "diamond": np.array([(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)]),
}


def check_image_size(image_size: int) -> int:
    return check_count("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)


def render(scene: Scene, image_size: int) -> Image.Image:
    """The scene as an ``image_size`` x ``image_size`` RGB image, objects drawn in order."""
    check_image_size(image_size)
    image = _background(scene.background, image_size)
    for obj in scene.objects:
        _draw(image, obj)
    return image


def _draw(image: Image.Image, obj: SceneObject) -> None:
    size = image.width
    cos, sin = math.cos(math.radians(obj.rotation)), math.sin(math.radians(obj.rotation))
    # Rotate counter-clockwise on screen (y points down) and scale to pixels in one product.
    transform = np.array([[cos, -sin], [sin, cos]]) * (obj.radius * size)
    points = UNIT_OUTLINES[obj.shape] @ transform  # (K, 2) pixels about the centre
    cx, cy = obj.center[0] * size, obj.center[1] * size
    (left, top), (right, bottom) = points.min(axis=0).tolist(), points.max(axis=0).tolist()
    x0, y0 = math.floor(cx + left) - 1, math.floor(cy + top) - 1
    width, height = math.ceil(cx + right) + 1 - x0, math.ceil(cy + bottom) + 1 - y0
    mask = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    local = (points + (cx - x0, cy - y0)) * SUPERSAMPLE  # (K, 2) supersampled mask pixels
    ImageDraw.Draw(mask).polygon(local.ravel().tolist(), fill=255)
    image.paste(obj.rgb, (x0, y0), mask.reduce(SUPERSAMPLE))


@lru_cache(maxsize=8)
def _coords(size: int) -> np.ndarray:
    """Pixel-centre coordinates along one side as fractions of it, (size,) float32."""
    coords = ((np.arange(size) + 0.5) / size).astype(np.float32)
    coords.flags.writeable = False
    return coords


@lru_cache(maxsize=8)
def _upsample_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) weights that spread ``cells`` values over ``size`` pixels, each pixel a
    smoothstep blend of its two nearest cell centres: ``M @ grid @ M.T`` upsamples a grid."""
    position = np.clip((np.arange(size) + 0.5) / size * cells - 0.5, 0, cells - 1)
    low = np.minimum(np.floor(position).astype(int), cells - 2)
    frac = position - low
    frac = frac * frac * (3 - 2 * frac)
    matrix = np.zeros((size, cells), dtype=np.float32)
    matrix[np.arange(size), low] = 1 - frac
    matrix[np.arange(size), low + 1] = frac
    matrix.flags.writeable = False
    return matrix


def _background(background: Background, size: int) -> Image.Image:
    """The background: ``rgb`` where the texture weight is 0, ``rgb2`` where it is 1."""
    first = Image.new("RGB", (size, size), background.rgb)
    if background.kind == "plain":
        return first
    weight = _texture_weight(background, size)  # (size, size) in [0, 1]
    mask = Image.fromarray((weight * 255 + 0.5).astype(np.uint8), "L")
    return Image.composite(Image.new("RGB", (size, size), background.rgb2), first, mask)


def _texture_weight(background: Background, size: int) -> np.ndarray:
    """How far each pixel is from ``rgb`` towards ``rgb2``, (size, size) float32 in [0, 1]."""
    if background.kind == "noise":
        # Value noise: soft blotches interpolated from a coarse grid, plus fine grain.
        rng = np.random.default_rng(background.texture_seed)
        upsample = _upsample_matrix(size, NOISE_CELLS)  # (size, cells)
        blotches = upsample @ rng.random((NOISE_CELLS, NOISE_CELLS), dtype=np.float32)
        blotches = blotches @ upsample.T  # (size, size)
        grain = rng.random((size, size), dtype=np.float32) - 0.5
        return np.clip(blotches + 0.4 * grain, 0.0, 1.0)
    coords = _coords(size)
    theta = math.radians(background.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    along = coords[None, :] * np.float32(cos) + coords[:, None] * np.float32(sin)  # (size, size)
    if background.kind == "stripes":
        # Triangle wave over the period, steepened so each edge ramps over ~1.5 pixels:
        # anti-aliased stripes without any transcendental function per pixel.
        phase = along / np.float32(background.period)
        wave = np.abs(phase - np.floor(phase) - 0.5) * 2  # (size, size), triangle in [0, 1]
        steepness = np.float32(background.period * size / 3)
        return np.clip((wave - 0.5) * steepness + 0.5, 0.0, 1.0)
    # Gradient: 0 at one corner, 1 at the opposite one.
    offset = min(0.0, cos) + min(0.0, sin)
    return (along - np.float32(offset)) / np.float32(abs(cos) + abs(sin))
