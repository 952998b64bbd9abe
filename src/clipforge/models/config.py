"""Typed, self-validating model configs and the registry of named configs.

The JSON form is OpenCLIP's (``embed_dim``, ``quick_gelu``, ``vision_cfg``, ``text_cfg``), so an
OpenCLIP model config or the ``config`` metadata of an OpenCLIP-layout checkpoint loads as is.
Every key is checked: an unknown key or an impossible value raises a ``ConfigError`` naming it,
because a silently ignored typo (``"patch_szie": 16``) builds a different model than intended.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..typed_config import build_dataclass, check, to_plain


class ConfigError(ValueError):
    """A model config has an unknown key or an impossible value."""


@dataclass(frozen=True, kw_only=True)
class VisionConfig:
    """The image tower. ``layers`` as an int builds a ViT; a 4-tuple builds a ModifiedResNet."""

    image_size: int = 224
    layers: int | tuple[int, int, int, int] = 12
    width: int = 768
    head_width: int = 64
    mlp_ratio: float = 4.0
    patch_size: int | None = 32
    patch_dropout: float = 0.0

    @property
    def is_resnet(self) -> bool:
        return isinstance(self.layers, tuple)

    @property
    def heads(self) -> int:
        """Attention heads of the ViT blocks, or of the ResNet attention pool."""
        return (self.width * 32 if self.is_resnet else self.width) // self.head_width

    def __post_init__(self) -> None:
        where = "vision_cfg"
        positive = ("image_size", "width", "head_width", "mlp_ratio")
        check("positive", f"{where}.", ConfigError, **{k: getattr(self, k) for k in positive})
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ConfigError(f"{where}.patch_dropout={self.patch_dropout!r} must be in [0, 1)")
        if self.is_resnet:
            object.__setattr__(self, "patch_size", None)  # a ResNet has no patches
            if len(self.layers) != 4 or any(n < 1 for n in self.layers):
                raise ConfigError(
                    f"{where}.layers={list(self.layers)!r}: a ResNet needs 4 stage depths >= 1"
                )
            if self.image_size % 32:
                raise ConfigError(
                    f"{where}.image_size={self.image_size} must be a multiple of 32 for a ResNet"
                )
            if self.width % 2 or (self.width * 32) % self.head_width:
                raise ConfigError(
                    f"{where}.width={self.width} must be even and width*32 divisible by "
                    f"head_width={self.head_width}"
                )
            return
        check("positive", f"{where}.", ConfigError, layers=self.layers)
        if self.patch_size is None or self.patch_size <= 0:
            raise ConfigError(f"{where}.patch_size={self.patch_size!r} must be > 0 for a ViT")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"{where}.patch_size={self.patch_size} does not divide image_size={self.image_size}"
            )
        if self.width % self.head_width:
            raise ConfigError(
                f"{where}.head_width={self.head_width} does not divide width={self.width}"
            )

    @property
    def grid_size(self) -> int:
        """Side of the token grid: patches per side for a ViT, the final feature map for a ResNet."""
        return self.image_size // (32 if self.is_resnet else self.patch_size)


@dataclass(frozen=True, kw_only=True)
class TextConfig:
    """The causal text transformer, pooled at the end-of-text token."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        where = "text_cfg"
        positive = ("vocab_size", "width", "heads", "layers", "mlp_ratio")
        check("positive", f"{where}.", ConfigError, **{k: getattr(self, k) for k in positive})
        if self.context_length < 2:
            raise ConfigError(f"{where}.context_length={self.context_length} must be >= 2")
        if self.width % self.heads:
            raise ConfigError(f"{where}.heads={self.heads} does not divide width={self.width}")


@dataclass(frozen=True, kw_only=True)
class CLIPConfig:
    """A whole CLIP model: both towers, the shared embedding size and the activation."""

    embed_dim: int = 512
    vision_cfg: VisionConfig = field(default_factory=VisionConfig)
    text_cfg: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = False
    init_logit_scale: float = math.log(1 / 0.07)
    init_logit_bias: float | None = None

    def __post_init__(self) -> None:
        check("positive", "config.", ConfigError, embed_dim=self.embed_dim)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> CLIPConfig:
        """Build from the JSON form; ``source`` names the input in error messages."""
        return build_dataclass(cls, data, source, ConfigError)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists, not tuples), readable by ``from_dict`` and by OpenCLIP."""
        return to_plain(self)

    def replace(self, **changes: Any) -> CLIPConfig:
        """A copy with top-level fields changed (``vision_cfg``/``text_cfg`` take dicts of changes)."""
        for key in ("vision_cfg", "text_cfg"):
            if isinstance(changes.get(key), dict):
                changes[key] = dataclasses.replace(getattr(self, key), **changes[key])
        return dataclasses.replace(self, **changes)


def mlp_width(width: int, mlp_ratio: float) -> int:
    """Hidden width of an MLP; rounding first keeps ratios such as 8192 / 1664 exact."""
    return int(round(width * mlp_ratio, 6))


_CONFIG_DIR = Path(__file__).parent / "configs"


def list_models() -> list[str]:
    """Names of the registered model configs, sorted."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.json"))


def get_model_config(name: str) -> CLIPConfig:
    """The registered config ``name``; an unknown name lists the closest known ones."""
    path = _CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        close = difflib.get_close_matches(name, list_models(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown model name {name!r}{hint} (clipforge.list_models() lists all names)"
        )
    return load_config_file(path)


def parse_json_object(
    text: str | bytes, source: str, error: type[ValueError] = ConfigError
) -> dict[str, Any]:
    """The JSON object ``text`` holds; otherwise ``error`` naming ``source``."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{source}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{source}: expected a JSON object, got {type(data).__name__}")
    return data


def config_from_document(data: dict[str, Any], source: str) -> CLIPConfig:
    """clipforge's ``config.json`` and OpenCLIP's ``open_clip_config.json`` nest the
    architecture under ``model_cfg``; a bare (OpenCLIP model) config is the architecture."""
    return CLIPConfig.from_dict(data.get("model_cfg", data), source=source)


def load_config_file(path: str | Path) -> CLIPConfig:
    """A config from a JSON file, bare or nested under ``model_cfg``."""
    path = Path(path)
    return config_from_document(parse_json_object(path.read_bytes(), str(path)), str(path))
