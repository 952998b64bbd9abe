"""Reading CLIP weights in every format people keep them in, into clipforge's layout.

A ``.safetensors`` file (config in its metadata when it has one), a ``.pt``/``.bin`` state dict
(always ``weights_only=True``), an OpenAI TorchScript archive, a Hugging Face ``CLIPModel``
directory, an OpenCLIP hub directory (``open_clip_config.json``), a clipforge directory, and
``hf-hub:org/name``. Each reader returns a :class:`Checkpoint`; what a file cannot say (the
architecture of a bare state dict) :func:`checkpoint_config` reads off the tensor shapes.
"""

from __future__ import annotations

import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .config import CLIPConfig, ConfigError, config_from_document, parse_json_object
from .convert import hf_config_to_clipforge, hf_to_clipforge
from .hub import DIRECTORY_LAYOUTS, HF_HUB_PREFIX, download_from_hub
from .infer import infer_config

log = logging.getLogger(__name__)
Tensor = torch.Tensor

# Scalars OpenAI's TorchScript archives keep beside the weights.
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


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
            where = f"{source} (metadata 'config')"
            document = parse_json_object(metadata["config"], where, CheckpointError)
            config = config_from_document(document, where)
        if any(k.startswith(("text_model.", "vision_model.")) for k in state_dict):
            raise CheckpointError(
                f"{source} holds a Hugging Face CLIPModel state dict, whose architecture is in "
                "its config.json: pass the directory that holds both"
            )
        return Checkpoint(state_dict, config, source)
    if _is_torchscript(path):
        return Checkpoint(_read_torchscript(path), None, source, is_openai_archive=True)
    return Checkpoint(_read_torch_pickle(path), None, source)


def _read_directory(path: Path) -> Checkpoint:
    """OpenCLIP's hub layout, else clipforge's or Hugging Face's ``config.json`` + weights."""
    layouts = ((path / c, w) for c, w in DIRECTORY_LAYOUTS if (path / c).is_file())
    config_file, weight_names = next(layouts, (None, None))
    if config_file is None:
        raise CheckpointError(
            f"directory {str(path)!r} holds no config.json (clipforge or Hugging Face) "
            "nor open_clip_config.json"
        )
    data = parse_json_object(config_file.read_bytes(), str(config_file), CheckpointError)
    weights = next((path / w for w in weight_names if (path / w).is_file()), None)
    if weights is None:
        raise CheckpointError(f"directory {str(path)!r} holds none of {weight_names}")
    is_safetensors = weights.suffix == ".safetensors"
    state_dict = _read_safetensors(weights)[0] if is_safetensors else _read_torch_pickle(weights)
    if data.get("model_type") != "clip" and "CLIPModel" not in data.get("architectures", []):
        return Checkpoint(state_dict, config_from_document(data, str(config_file)), str(path))
    try:
        return Checkpoint(hf_to_clipforge(state_dict), hf_config_to_clipforge(data), str(path))
    except KeyError as err:
        raise CheckpointError(f"{weights}: not a CLIPModel state dict ({err})") from None


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
            f"{path}: cannot read checkpoint ({type(err).__name__}: {_first_reason(err)})"
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


def _first_reason(err: Exception) -> str:
    """The line of torch's message that says what is wrong: its safe unpickler wraps the
    reason in a page of advice about ``weights_only``, which must stay off for safety."""
    text = str(err)
    _, found, reason = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (reason if found else text).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


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
