"""Writing a model in the three layouts people load CLIP weights from.

clipforge's own (safetensors + config), OpenCLIP's hub layout, and Hugging Face's
``CLIPModel`` directory. Every file is written under a temporary name and renamed, so an
interrupted save never leaves half a checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..atomic import atomic_path, write_json_atomic
from ..constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..version import __version__
from .clip import CLIP
from .config import ConfigError
from .convert import clipforge_config_to_hf, clipforge_to_hf
from .formats import CheckpointError

Tensor = torch.Tensor


def save_model(model: CLIP, path: str | os.PathLike) -> Path:
    """Save in clipforge's format: ``DIR/model.safetensors`` + ``DIR/config.json``.

    A path ending in ``.safetensors`` writes that single file, the config in its metadata.
    Either loads back with ``create_model(path)``.
    """
    path, config = Path(path), model.config.to_dict()
    metadata = {"format": "pt", "config": json.dumps(config), "clipforge_version": __version__}
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_safetensors(_state_dict(model), path, metadata)
        return path
    path.mkdir(parents=True, exist_ok=True)
    _save_safetensors(_state_dict(model), path / "model.safetensors", metadata)
    write_json_atomic(path / "config.json", {"clipforge_version": __version__, "model_cfg": config})
    return path


def save_openclip(model: CLIP, directory: str | os.PathLike) -> Path:
    """Save in OpenCLIP's hub layout: ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _save_safetensors(_state_dict(model), directory / "open_clip_model.safetensors")
    document = {
        "model_cfg": model.config.to_dict(),
        "preprocess_cfg": {"mean": list(OPENAI_CLIP_MEAN), "std": list(OPENAI_CLIP_STD)},
    }
    write_json_atomic(directory / "open_clip_config.json", document)
    return directory


def save_hf(model: CLIP, directory: str | os.PathLike) -> Path:
    """Save as a Hugging Face ``CLIPModel`` directory that ``CLIPModel.from_pretrained`` loads."""
    try:
        hf_config = clipforge_config_to_hf(model.config)
    except ConfigError as err:
        raise CheckpointError(f"cannot export to Hugging Face: {err}") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _save_safetensors(clipforge_to_hf(_state_dict(model)), directory / "model.safetensors")
    write_json_atomic(directory / "config.json", hf_config)
    return directory


def _state_dict(model: CLIP) -> dict[str, Tensor]:
    """Detached and contiguous: safetensors refuses views that share or stride storage."""
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def _save_safetensors(
    tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or {"format": "pt"})
