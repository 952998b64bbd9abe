"""Weight conversion between clipforge/OpenAI/OpenCLIP state dicts and Hugging Face ``CLIPModel``.

clipforge's own layout *is* OpenAI's, so OpenAI and OpenCLIP weights need no conversion, only
an architecture: :func:`infer_config` reads it off the tensor shapes. Hugging Face keeps q/k/v
projections apart and stores projections transposed; :func:`hf_to_clipforge` and
:func:`clipforge_to_hf` map between the two, tensor for tensor.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig, mlp_width

Tensor = torch.Tensor

# Per-block names: (Hugging Face, clipforge). q/k/v are packed separately below.
_BLOCK_NAMES = [
    ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
    ("self_attn.out_proj", "attn.out_proj"),
]
# Whole-tower names: (Hugging Face, clipforge, transposed).
_TOWER_NAMES = [
    ("text_model.embeddings.token_embedding.weight", "token_embedding.weight", False),
    ("text_model.embeddings.position_embedding.weight", "positional_embedding", False),
    ("text_model.final_layer_norm.weight", "ln_final.weight", False),
    ("text_model.final_layer_norm.bias", "ln_final.bias", False),
    ("text_projection.weight", "text_projection", True),
    ("vision_model.embeddings.class_embedding", "visual.class_embedding", False),
    ("vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight", False),
    ("vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", False),
    ("vision_model.pre_layrnorm.weight", "visual.ln_pre.weight", False),
    ("vision_model.pre_layrnorm.bias", "visual.ln_pre.bias", False),
    ("vision_model.post_layernorm.weight", "visual.ln_post.weight", False),
    ("vision_model.post_layernorm.bias", "visual.ln_post.bias", False),
    ("visual_projection.weight", "visual.proj", True),
    ("logit_scale", "logit_scale", False),
]
_TOWERS = [("text_model.encoder.layers", "transformer.resblocks"),
           ("vision_model.encoder.layers", "visual.transformer.resblocks")]  # fmt: skip


def is_hf_state_dict(state_dict: dict[str, Tensor]) -> bool:
    return any(k.startswith(("text_model.", "vision_model.")) for k in state_dict)


def hf_config_to_clipforge(hf: dict[str, Any]) -> CLIPConfig:
    """A clipforge config from a Hugging Face ``CLIPConfig`` dict (``config.json``)."""
    try:
        text, vision = hf["text_config"], hf["vision_config"]
        acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
        if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
            raise ConfigError(
                f"unsupported hidden_act {sorted(acts)}; clipforge has gelu, quick_gelu"
            )
        return CLIPConfig(
            embed_dim=hf["projection_dim"],
            quick_gelu=acts == {"quick_gelu"},
            init_logit_scale=hf.get("logit_scale_init_value", math.log(1 / 0.07)),
            vision_cfg=VisionConfig(
                image_size=vision["image_size"],
                patch_size=vision["patch_size"],
                width=vision["hidden_size"],
                layers=vision["num_hidden_layers"],
                head_width=vision["hidden_size"] // vision["num_attention_heads"],
                mlp_ratio=vision["intermediate_size"] / vision["hidden_size"],
            ),
            text_cfg=TextConfig(
                context_length=text["max_position_embeddings"],
                vocab_size=text["vocab_size"],
                width=text["hidden_size"],
                heads=text["num_attention_heads"],
                layers=text["num_hidden_layers"],
                mlp_ratio=text["intermediate_size"] / text["hidden_size"],
            ),
        )
    except KeyError as err:
        raise ConfigError(f"Hugging Face CLIP config lacks the key {err}") from None


def clipforge_config_to_hf(cfg: CLIPConfig) -> dict[str, Any]:
    """The Hugging Face ``CLIPConfig`` dict for a ViT clipforge config."""
    if cfg.vision_cfg.is_resnet:
        raise ConfigError("Hugging Face CLIPModel has no ResNet image tower; export to openclip")
    vision, text = cfg.vision_cfg, cfg.text_cfg
    act = "quick_gelu" if cfg.quick_gelu else "gelu"
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": cfg.init_logit_scale,
        "text_config": {
            "model_type": "clip_text_model",
            "hidden_act": act,
            "hidden_size": text.width,
            "intermediate_size": mlp_width(text.width, text.mlp_ratio),
            "num_attention_heads": text.heads,
            "num_hidden_layers": text.layers,
            "max_position_embeddings": text.context_length,
            "vocab_size": text.vocab_size,
            "projection_dim": cfg.embed_dim,
            "layer_norm_eps": 1e-5,
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 0,
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_act": act,
            "hidden_size": vision.width,
            "intermediate_size": mlp_width(vision.width, vision.mlp_ratio),
            "num_attention_heads": vision.heads,
            "num_hidden_layers": vision.layers,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "projection_dim": cfg.embed_dim,
            "layer_norm_eps": 1e-5,
            "num_channels": 3,
        },
    }


def hf_to_clipforge(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename (and pack q/k/v, transpose projections) a Hugging Face CLIPModel state dict."""
    src = {k: v for k, v in state_dict.items() if not k.endswith("position_ids")}
    out: dict[str, Tensor] = {}
    for hf_name, name, transposed in _TOWER_NAMES:
        if hf_name in src:
            tensor = src.pop(hf_name)
            out[name] = tensor.t().contiguous() if transposed else tensor
    for hf_prefix, prefix in _TOWERS:
        for i in _layer_indices(src, hf_prefix):
            hf_block, block = f"{hf_prefix}.{i}", f"{prefix}.{i}"
            for hf_part, part in _BLOCK_NAMES:
                for kind in ("weight", "bias"):
                    out[f"{block}.{part}.{kind}"] = src.pop(f"{hf_block}.{hf_part}.{kind}")
            for kind in ("weight", "bias"):
                qkv = [src.pop(f"{hf_block}.self_attn.{p}_proj.{kind}") for p in "qkv"]
                out[f"{block}.attn.in_proj_{kind}"] = torch.cat(qkv)
    if src:
        raise KeyError(f"Hugging Face keys with no clipforge counterpart: {sorted(src)[:10]}")
    return out


def clipforge_to_hf(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`hf_to_clipforge`."""
    src = dict(state_dict)
    out: dict[str, Tensor] = {}
    for hf_name, name, transposed in _TOWER_NAMES:
        tensor = src.pop(name)
        out[hf_name] = tensor.t().contiguous() if transposed else tensor
    for hf_prefix, prefix in _TOWERS:
        for i in _layer_indices(src, prefix):
            hf_block, block = f"{hf_prefix}.{i}", f"{prefix}.{i}"
            for hf_part, part in _BLOCK_NAMES:
                for kind in ("weight", "bias"):
                    out[f"{hf_block}.{hf_part}.{kind}"] = src.pop(f"{block}.{part}.{kind}")
            for kind in ("weight", "bias"):
                packed = src.pop(f"{block}.attn.in_proj_{kind}")
                for p, part in zip("qkv", packed.chunk(3), strict=True):
                    out[f"{hf_block}.self_attn.{p}_proj.{kind}"] = part.contiguous()
    src.pop("logit_bias", None)
    if src:
        raise KeyError(f"clipforge keys with no Hugging Face counterpart: {sorted(src)[:10]}")
    return out


def _layer_indices(state_dict: dict[str, Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in state_dict if (m := pattern.match(k))})


def infer_config(state_dict: dict[str, Tensor], *, quick_gelu: bool) -> CLIPConfig:
    """Read a CLIP architecture off the tensor shapes of an OpenAI-layout state dict.

    Head counts are not visible in shapes; like OpenAI's loader this assumes 64-wide heads
    (the width of every released CLIP). The activation is not visible either, so the caller
    says it (OpenAI's own checkpoints use QuickGELU).
    """
    try:
        width = state_dict["ln_final.weight"].shape[0]
        text = TextConfig(
            context_length=state_dict["positional_embedding"].shape[0],
            vocab_size=state_dict["token_embedding.weight"].shape[0],
            width=width,
            heads=max(1, width // 64),
            layers=len(_layer_indices(state_dict, "transformer.resblocks")),
        )
        embed_dim = state_dict["text_projection"].shape[1]
        if "visual.proj" in state_dict:
            conv = state_dict["visual.conv1.weight"]
            grid = math.isqrt(state_dict["visual.positional_embedding"].shape[0] - 1)
            vision = VisionConfig(
                image_size=conv.shape[-1] * grid,
                patch_size=conv.shape[-1],
                width=conv.shape[0],
                layers=len(_layer_indices(state_dict, "visual.transformer.resblocks")),
                head_width=64 if conv.shape[0] % 64 == 0 else conv.shape[0],
                mlp_ratio=state_dict["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
                / conv.shape[0],
            )
        else:
            grid = math.isqrt(state_dict["visual.attnpool.positional_embedding"].shape[0] - 1)
            stages = tuple(len(_layer_indices(state_dict, f"visual.layer{i}")) for i in range(1, 5))
            vision = VisionConfig(
                image_size=grid * 32,
                layers=stages,
                width=state_dict["visual.layer1.0.conv1.weight"].shape[0],
                patch_size=None,
            )
    except KeyError as err:
        raise ConfigError(
            f"cannot infer a CLIP architecture: the state dict has no {err} "
            f"(its first keys: {sorted(state_dict)[:8]})"
        ) from None
    return CLIPConfig(embed_dim=embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=quick_gelu)
