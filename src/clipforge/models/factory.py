"""``create_model``: one entry point from a name, a config or a checkpoint to a ready model."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from ..precision import resolve_precision
from .clip import CLIP
from .config import CLIPConfig, get_model_config, list_models, load_config_file
from .fit import load_weights
from .formats import Checkpoint, CheckpointError, checkpoint_config, read_checkpoint
from .hub import HF_HUB_PREFIX, PretrainedNotAvailableError
from .pretrained import PretrainedWeights, fetch_error, find_pretrained, unknown_tag_error

log = logging.getLogger(__name__)

ModelSpec = str | os.PathLike | CLIPConfig | dict[str, Any] | None


def create_model(
    name_or_config: ModelSpec = None,
    pretrained: str | os.PathLike | None = None,
    *,
    precision: str = "fp32",
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    context_length: int | None = None,
    patch_dropout: float | None = None,
) -> CLIP:
    """Build a CLIP model and, when given, load its weights.

    ``name_or_config`` is a registered name (``clipforge.list_models()``), a :class:`CLIPConfig`
    or its dict form, a ``.json`` config file, or a checkpoint (file, directory or ``hf-hub:``)
    that records or implies its architecture. ``pretrained`` is a checkpoint whose weights are
    loaded into the named architecture, or one of OpenCLIP's tags for it (``openai``,
    ``laion2b_s34b_b79k``, ...: :func:`~clipforge.models.pretrained.list_pretrained`), read
    through the hub cache. ``image_size``/``context_length`` change the model's
    input sizes; loaded position embeddings are resized to fit. ``precision`` is a name of
    :mod:`clipforge.precision`: ``bf16``/``fp16`` cast the weights, the ``amp_*`` names (and
    ``auto``) keep them in fp32 for the caller to run under the precision's autocast.
    """
    weight_dtype = resolve_precision(precision, device).weight_dtype
    config, checkpoint = resolve_spec(name_or_config)
    tag = _pretrained_tag(name_or_config, pretrained)
    if tag is not None:
        config = get_model_config(tag.architecture)
        try:
            checkpoint = read_checkpoint(tag.source)
        except PretrainedNotAvailableError as err:
            raise PretrainedNotAvailableError(fetch_error(tag, err)) from None
    elif pretrained is not None:
        checkpoint = read_checkpoint(pretrained)
        if config is None:
            config = checkpoint_config(checkpoint)
    if config is None:
        raise ValueError("create_model needs a model name, a config or a checkpoint")
    vision = {"image_size": image_size, "patch_dropout": patch_dropout}
    text = {"context_length": context_length}
    model = CLIP(
        config.replace(
            vision_cfg={k: v for k, v in vision.items() if v is not None},
            text_cfg={k: v for k, v in text.items() if v is not None},
        )
    )
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.to(device=device, dtype=weight_dtype)


def _pretrained_tag(spec: ModelSpec, pretrained: object) -> PretrainedWeights | None:
    """The registered weights ``pretrained`` names for the architecture ``spec`` names, when it
    is a tag (OpenCLIP's ``laion2b_s34b_b79k``, ``openai``, ...) rather than a file."""
    if not isinstance(spec, str) or spec not in list_models() or not isinstance(pretrained, str):
        return None
    if _is_checkpoint(pretrained) or _looks_like_path(pretrained):
        return None  # read_checkpoint reads it, or says it does not exist
    tag = find_pretrained(spec, pretrained)
    if tag is None:
        raise CheckpointError(unknown_tag_error(spec, pretrained))
    if tag.architecture != spec:
        log.info("%s's %r weights use QuickGELU: building %s", spec, tag.tag, tag.architecture)
    return tag


def resolve_spec(spec: ModelSpec) -> tuple[CLIPConfig | None, Checkpoint | None]:
    if spec is None:
        return None, None
    if isinstance(spec, CLIPConfig):
        return spec, None
    if isinstance(spec, dict):
        return CLIPConfig.from_dict(spec), None
    text = str(spec)
    if text in list_models():
        return get_model_config(text), None
    path = Path(text)
    if path.suffix == ".json" and path.is_file():
        return load_config_file(path), None
    if _is_checkpoint(text):
        checkpoint = read_checkpoint(text)
        return checkpoint_config(checkpoint), checkpoint
    if _looks_like_path(text):
        raise FileNotFoundError(f"model {text!r} is neither a registered name nor an existing file")
    return get_model_config(text), None  # raises with the closest names


def _is_checkpoint(text: str) -> bool:
    """An ``hf-hub:`` name or an existing file or directory."""
    return text.startswith(HF_HUB_PREFIX) or Path(text).exists()


def _looks_like_path(text: str) -> bool:
    """A path rather than a name (a model's or a pretrained tag): it has a folder or a suffix."""
    return any(sep in text for sep in ("/", os.sep)) or bool(Path(text).suffix)
