"""What a shapes-world image shows, as plain data: objects on a background.

A :class:`Scene` holds every random choice made for an image (jitter, rotation, shade, texture
seed), so drawing is a pure function of the scene and the image size, and the same scene can be
rendered at 32 px for a test and 512 px for a figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipforge.data.shapes.vocab import (
    COLOURS,
    HELDOUT_PAIRS,
    POSITION_XY,
    POSITIONS,
    SHAPES,
    SIZE_RADIUS,
    SIZES,
    check_choice,
)

RGB = tuple[int, int, int]
BACKGROUND_KINDS: tuple[str, ...] = ("plain", "noise", "stripes", "gradient")


@dataclass(frozen=True)
class SceneObject:
    """One shape. ``offset`` (x, y) and ``scale`` jitter the nominal slot and size so that no
    two images of the same description are pixel-identical; ``rgb`` is the named colour with
    a small shade change for the same reason."""

    shape: str
    colour: str
    size: str
    position: str
    rgb: RGB
    rotation: float = 0.0  # degrees, counter-clockwise
    offset: tuple[float, float] = (0.0, 0.0)  # fraction of the image side
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("size", self.size, SIZES)
        check_choice("position", self.position, POSITIONS)

    @property
    def pair(self) -> tuple[str, str]:
        """``(colour, shape)``, the composition that splits hold out."""
        return (self.colour, self.shape)

    @property
    def center(self) -> tuple[float, float]:
        """Centre (x, y) as fractions of the image side, y pointing down."""
        x, y = POSITION_XY[self.position]
        return (x + self.offset[0], y + self.offset[1])

    @property
    def radius(self) -> float:
        """Half-width of the object's box as a fraction of the image side."""
        return SIZE_RADIUS[self.size] * self.scale


@dataclass(frozen=True)
class Background:
    """A field that mixes ``rgb`` and ``rgb2``: constant (plain), value noise seeded by
    ``texture_seed``, soft stripes or a linear gradient along ``angle``. Only the two end
    colours are needed to prove that every pixel stays far from every object's colour."""

    kind: str
    rgb: RGB
    rgb2: RGB
    angle: float = 0.0  # degrees
    period: float = 0.25  # stripe period, fraction of the image side
    texture_seed: int = 0

    def __post_init__(self) -> None:
        check_choice("background kind", self.kind, BACKGROUND_KINDS)


@dataclass(frozen=True)
class Scene:
    """One to three objects, each in its own position slot, drawn in order over a background."""

    objects: tuple[SceneObject, ...]
    background: Background

    def __post_init__(self) -> None:
        if not self.objects:
            raise ValueError("scene has no objects; expected at least one")
        positions = [obj.position for obj in self.objects]
        if len(set(positions)) != len(positions):
            raise ValueError(f"scene positions {positions} repeat; each object needs its own slot")

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (colour, shape) pair of each object, in drawing order."""
        return tuple(obj.pair for obj in self.objects)

    @property
    def has_heldout_pair(self) -> bool:
        """Whether any object shows a composition that training never sees."""
        return any(pair in HELDOUT_PAIRS for pair in self.pairs)

    def to_dict(self) -> dict:
        """Every field as nested dicts and tuples that ``json.dumps`` accepts, for shard
        metadata (a shallow copy: ``dataclasses.asdict`` deep-copies and is 10x slower)."""
        return {
            "objects": [dict(vars(obj)) for obj in self.objects],
            "background": dict(vars(self.background)),
        }

    def attributes(self) -> dict[str, str | int | bool]:
        """A flat record for tables (parquet, CSV): per-object fields comma-joined in order."""
        return {
            "n_objects": len(self.objects),
            "shapes": ",".join(obj.shape for obj in self.objects),
            "colours": ",".join(obj.colour for obj in self.objects),
            "sizes": ",".join(obj.size for obj in self.objects),
            "positions": ",".join(obj.position for obj in self.objects),
            "background": self.background.kind,
            "heldout": self.has_heldout_pair,
        }
