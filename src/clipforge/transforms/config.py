"""The self-validating preprocessing config, and the CLIP normalisation constants it defaults to.

The config is stored inside model configs, so it round-trips through plain dicts (JSON/YAML) and
rejects unknown keys: a typo such as ``"resize_mod"`` would otherwise silently fall back to the
default and feed the model differently framed images than it was trained on.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from PIL import Image

# Re-exported here: the preprocessing API is where callers look for them.
from clipforge.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
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
