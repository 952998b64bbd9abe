"""Reading and writing CLIP weights in every format people keep them in.

Read: a ``.safetensors`` file (config in its metadata when it has one), a ``.pt``/``.bin``
state dict (always ``weights_only=True``), an OpenAI TorchScript archive, a Hugging Face
``CLIPModel`` directory, an OpenCLIP hub directory (``open_clip_config.json``), a clipforge
directory, and ``hf-hub:org/name`` through ``huggingface_hub``.
Write: clipforge (safetensors + config), OpenCLIP hub layout, Hugging Face ``CLIPModel``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path, write_json_atomic
from ..constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..version import __version__
from .clip import CLIP
from .config import CLIPConfig, ConfigError
from .convert import (
    clipforge_config_to_hf,
    clipforge_to_hf,
    hf_config_to_clipforge,
    hf_to_clipforge,
    infer_config,
    is_hf_state_dict,
)

log = logging.getLogger(__name__)
Tensor = torch.Tensor

HF_HUB_PREFIX = "hf-hub:"
# Scalars OpenAI's TorchScript archives keep beside the weights.
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# Text positions kept as they are when stretching to a longer context (Long-CLIP's choice:
# the first positions are well trained, the tail is interpolated).
_KEPT_TEXT_POSITIONS = 20


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class PretrainedNotAvailableError(RuntimeError):
    """Pretrained weights could not be fetched (offline, or no such repository)."""


@dataclass
class Checkpoint:
    """Weights in clipforge's layout, with the architecture when the source records one."""

    state_dict: dict[str, Tensor]
    config: CLIPConfig | None
    source: str
    is_openai_archive: bool = False


def read_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """Read weights from any supported file, directory or ``hf-hub:`` name."""
    source = str(source)
    if source.startswith(HF_HUB_PREFIX):
        return read_checkpoint(download_from_hub(source[len(HF_HUB_PREFIX) :]))
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"checkpoint {source!r} does not exist")
    if path.is_dir():
        return _read_directory(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {source!r} is an empty file")
    if path.suffix == ".safetensors":
        state_dict, metadata = _read_safetensors(path)
        config = None
        if metadata and "config" in metadata:
            config = _parse_config(metadata["config"], f"{source} (metadata 'config')")
        if is_hf_state_dict(state_dict):
            raise CheckpointError(
                f"{source} holds a Hugging Face CLIPModel state dict, whose architecture is in "
                "its config.json: pass the directory that holds both"
            )
        return Checkpoint(state_dict, config, source)
    if _is_torchscript(path):
        return Checkpoint(_read_torchscript(path), None, source, is_openai_archive=True)
    return Checkpoint(_read_torch_pickle(path), None, source)


def _read_directory(path: Path) -> Checkpoint:
    config_file = path / "config.json"
    openclip_config = path / "open_clip_config.json"
    if openclip_config.is_file():
        weights = _first_existing(
            path, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        )
        state_dict = _read_weights_file(weights)
        return Checkpoint(state_dict, _config_from_json_file(openclip_config), str(path))
    if config_file.is_file():
        data = _load_json(config_file)
        weights = _first_existing(path, ["model.safetensors", "pytorch_model.bin"])
        state_dict = _read_weights_file(weights)
        if data.get("model_type") == "clip" or "CLIPModel" in data.get("architectures", []):
            try:
                return Checkpoint(
                    hf_to_clipforge(state_dict), hf_config_to_clipforge(data), str(path)
                )
            except KeyError as err:
                raise CheckpointError(f"{weights}: not a CLIPModel state dict ({err})") from None
        return Checkpoint(state_dict, _config_from_json_file(config_file), str(path))
    raise CheckpointError(
        f"directory {str(path)!r} holds no config.json (clipforge or Hugging Face) "
        "nor open_clip_config.json"
    )


def _first_existing(directory: Path, names: list[str]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise CheckpointError(f"directory {str(directory)!r} holds none of {names}")


def _read_weights_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        return _read_safetensors(path)[0]
    return _read_torch_pickle(path)


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str] | None]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files holding compiled ``code/``; state dicts hold none."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _read_torchscript(path: Path) -> dict[str, Tensor]:
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is OpenAI's format
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise CheckpointError(f"{path}: cannot read TorchScript archive ({err})") from None
    return {k: v for k, v in module.state_dict().items() if k not in _ARCHIVE_EXTRAS}


def _read_torch_pickle(path: Path) -> dict[str, Tensor]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or unsafe pickles
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({type(err).__name__}: {err})"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]  # an OpenCLIP training checkpoint
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise CheckpointError(
            f"{path}: expected a state dict of tensors, got {type(data).__name__}"
        )
    if all(k.startswith("module.") for k in data):
        data = {k[len("module.") :]: v for k, v in data.items()}  # saved from DDP
    return {k: v for k, v in data.items() if k not in _ARCHIVE_EXTRAS}


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _config_from_json_file(path: Path) -> CLIPConfig:
    data = _load_json(path)
    return CLIPConfig.from_dict(data.get("model_cfg", data), source=str(path))


def _parse_config(text: str, source: str) -> CLIPConfig:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{source}: not valid JSON ({err})") from None
    return CLIPConfig.from_dict(data.get("model_cfg", data), source=source)


def checkpoint_config(checkpoint: Checkpoint) -> CLIPConfig:
    """The recorded architecture, else one inferred from the tensor shapes."""
    if checkpoint.config is not None:
        return checkpoint.config
    quick_gelu = checkpoint.is_openai_archive
    if not quick_gelu:
        log.warning(
            "%s records no architecture; inferring it from tensor shapes with GELU. If these "
            "are OpenAI weights, pass the model name with '-quickgelu'.",
            checkpoint.source,
        )
    try:
        return infer_config(checkpoint.state_dict, quick_gelu=quick_gelu)
    except ConfigError as err:
        raise CheckpointError(f"{checkpoint.source}: {err}") from None


def load_weights(model: CLIP, checkpoint: Checkpoint) -> None:
    """Load weights into ``model``, resizing position embeddings to the model's sizes.

    Any key the model lacks or expects, and any shape that differs after resizing, fails with
    a message listing them: a partial load would give a silently wrong model.
    """
    state_dict = dict(checkpoint.state_dict)
    own = model.state_dict()
    _resize_position_embeddings(state_dict, own)
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = f" (+{len(keys) - 10} more)" if len(keys) > 10 else ""
                parts.append(f"{len(keys)} {label} keys {keys[:10]}{more}")
        if mismatched:
            parts.append(f"shape mismatches {mismatched[:10]}")
        raise CheckpointError(
            f"{checkpoint.source} does not fit this {_describe(model)} model: " + "; ".join(parts)
        )
    model.load_state_dict(state_dict)


def _describe(model: CLIP) -> str:
    vision = model.config.vision_cfg
    tower = "ResNet" if vision.is_resnet else f"ViT/{vision.patch_size}"
    return f"{tower} {vision.image_size}px"


def _resize_position_embeddings(state_dict: dict[str, Tensor], own: dict[str, Tensor]) -> None:
    for key in ("visual.positional_embedding", "visual.attnpool.positional_embedding"):
        if key in state_dict and key in own and state_dict[key].shape != own[key].shape:
            state_dict[key] = resize_grid_embedding(state_dict[key], own[key].shape[0])
    key = "positional_embedding"
    if key in state_dict and key in own and state_dict[key].shape != own[key].shape:
        state_dict[key] = resize_text_embedding(state_dict[key], own[key].shape[0])


def resize_grid_embedding(pos: Tensor, tokens: int) -> Tensor:
    """Bicubically resample a (1 + g*g, W) grid embedding to ``tokens`` = 1 + g'*g' rows."""
    old, new = math.isqrt(pos.shape[0] - 1), math.isqrt(tokens - 1)
    if old * old + 1 != pos.shape[0] or new * new + 1 != tokens:
        raise CheckpointError(
            f"cannot resize a {tuple(pos.shape)} position grid to {tokens} tokens"
        )
    log.info("resizing image position embedding from %dx%d to %dx%d", old, old, new, new)
    grid = pos[1:].float().reshape(1, old, old, -1).permute(0, 3, 1, 2)  # (1, W, g, g)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new * new, -1)  # (g'*g', W)
    return torch.cat([pos[:1].float(), grid]).to(pos.dtype)


def resize_text_embedding(pos: Tensor, length: int) -> Tensor:
    """Fit a (L, W) text position embedding to ``length`` positions.

    Shorter: truncate, which is exact for a causal tower on texts that fit. Longer: keep the
    first positions and linearly stretch the rest (Long-CLIP's knowledge-preserving stretch).
    """
    if length <= pos.shape[0]:
        return pos[:length]
    keep = min(_KEPT_TEXT_POSITIONS, pos.shape[0] - 1)
    tail = pos[keep:].float().t().unsqueeze(0)  # (1, W, L - keep)
    tail = F.interpolate(tail, size=length - keep, mode="linear", align_corners=True)
    return torch.cat([pos[:keep].float(), tail[0].t()]).to(pos.dtype)


def download_from_hub(name: str) -> Path:
    """Fetch an OpenCLIP or transformers CLIP repository; return its local snapshot directory."""
    repo, _, revision = name.partition("@")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:
        raise PretrainedNotAvailableError(
            f"'hf-hub:{name}' needs huggingface_hub: pip install 'clipforge[hub]'"
        ) from None
    layouts = [
        ("open_clip_config.json", ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]),
        ("config.json", ["model.safetensors", "pytorch_model.bin"]),
    ]
    offline_hint = (
        f"cannot fetch 'hf-hub:{name}' (no network or not in the local cache); download its "
        "files elsewhere and pass the local file or directory instead, e.g. "
        "create_model('ViT-B-32', pretrained='/path/to/open_clip_model.safetensors')"
    )
    try:
        for config_name, weight_names in layouts:
            try:
                config = hf_hub_download(repo, config_name, revision=revision or None)
            except LocalEntryNotFoundError:
                raise
            except EntryNotFoundError:
                continue
            for weight_name in weight_names:
                try:
                    hf_hub_download(repo, weight_name, revision=revision or None)
                    return Path(config).parent
                except LocalEntryNotFoundError:
                    raise
                except EntryNotFoundError:
                    continue
    except RepositoryNotFoundError:
        raise PretrainedNotAvailableError(f"no repository 'hf-hub:{name}' on the hub") from None
    except (OSError, ConnectionError) as err:
        raise PretrainedNotAvailableError(f"{offline_hint} [{type(err).__name__}]") from None
    raise PretrainedNotAvailableError(
        f"'hf-hub:{name}' holds no CLIP weights in a layout clipforge reads "
        "(open_clip_config.json + open_clip_model.safetensors, or config.json + model.safetensors)"
    )


def _atomic_save_safetensors(tensors: dict[str, Tensor], path: Path, metadata: dict) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _contiguous_state_dict(model: CLIP) -> dict[str, Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def save_model(model: CLIP, path: str | os.PathLike) -> Path:
    """Save in clipforge's format: ``DIR/model.safetensors`` + ``DIR/config.json``.

    A path ending in ``.safetensors`` writes that single file, the config in its metadata.
    Either loads back with ``create_model(path)``.
    """
    path = Path(path)
    config_json = json.dumps(model.config.to_dict())
    metadata = {"format": "pt", "config": config_json, "clipforge_version": __version__}
    if path.suffix == ".safetensors":
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save_safetensors(_contiguous_state_dict(model), path, metadata)
        return path
    path.mkdir(parents=True, exist_ok=True)
    _atomic_save_safetensors(_contiguous_state_dict(model), path / "model.safetensors", metadata)
    document = {"clipforge_version": __version__, "model_cfg": model.config.to_dict()}
    write_json_atomic(path / "config.json", document)
    return path


def save_openclip(model: CLIP, directory: str | os.PathLike) -> Path:
    """Save in OpenCLIP's hub layout: ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "open_clip_model.safetensors"
    _atomic_save_safetensors(_contiguous_state_dict(model), weights, {"format": "pt"})
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
    state_dict = clipforge_to_hf(_contiguous_state_dict(model))
    _atomic_save_safetensors(state_dict, directory / "model.safetensors", {"format": "pt"})
    write_json_atomic(directory / "config.json", hf_config)
    return directory
