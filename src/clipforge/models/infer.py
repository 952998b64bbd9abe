"""An architecture read off the tensor shapes of an OpenAI-layout state dict.

OpenAI's archives and bare ``.pt`` state dicts record no config; the shapes say nearly all of
it. What they cannot say (head count, activation) follows OpenAI's own loader: 64-wide heads,
the activation chosen by the caller.
"""

from __future__ import annotations

import math
import re

import torch

from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig

Tensor = torch.Tensor


def layer_indices(state_dict: dict[str, Tensor], prefix: str) -> list[int]:
    """The sorted block numbers N of the keys ``{prefix}.N.*``: a tower's depth and its names."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pattern.match(k))})


def infer_config(state_dict: dict[str, Tensor], *, quick_gelu: bool) -> CLIPConfig:
    """Read a CLIP architecture off the tensor shapes of an OpenAI-layout state dict.

    Heads are assumed 64 wide (as in every released CLIP); ``quick_gelu`` is the caller's call.
    """
    try:
        width = state_dict["ln_final.weight"].shape[0]
        text = TextConfig(
            context_length=state_dict["positional_embedding"].shape[0],
            vocab_size=state_dict["token_embedding.weight"].shape[0],
            width=width,
            heads=max(1, width // 64),
            layers=len(layer_indices(state_dict, "transformer.resblocks")),
        )
        embed_dim = state_dict["text_projection"].shape[1]
        vision = (
            _vit_config(state_dict) if "visual.proj" in state_dict else _resnet_config(state_dict)
        )
    except KeyError as err:
        raise ConfigError(
            f"cannot infer a CLIP architecture: the state dict has no {err} "
            f"(its first keys: {sorted(state_dict)[:8]})"
        ) from None
    return CLIPConfig(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=quick_gelu)


def _vit_config(state_dict: dict[str, Tensor]) -> VisionConfig:
    conv = state_dict["visual.conv1.weight"]  # (width, 3, patch, patch)
    grid = math.isqrt(state_dict["visual.positional_embedding"].shape[0] - 1)
    return VisionConfig(
        image_size=conv.shape[-1] * grid,
        patch_size=conv.shape[-1],
        width=conv.shape[0],
        layers=len(layer_indices(state_dict, "visual.transformer.resblocks")),
        head_width=64 if conv.shape[0] % 64 == 0 else conv.shape[0],
        mlp_ratio=state_dict["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        / conv.shape[0],
    )


def _resnet_config(state_dict: dict[str, Tensor]) -> VisionConfig:
    grid = math.isqrt(state_dict["visual.attnpool.positional_embedding"].shape[0] - 1)
    return VisionConfig(
        image_size=grid * 32,  # the ModifiedResNet downsamples by 32 before attention pooling
        layers=tuple(len(layer_indices(state_dict, f"visual.layer{i}")) for i in range(1, 5)),
        width=state_dict["visual.layer1.0.conv1.weight"].shape[0],
        patch_size=None,
    )
