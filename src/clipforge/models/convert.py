"""Weight conversion between clipforge/OpenAI/OpenCLIP state dicts and Hugging Face ``CLIPModel``.

clipforge's own layout *is* OpenAI's, so OpenAI and OpenCLIP weights need no conversion, only
an architecture (:mod:`.infer` reads it off the tensor shapes). Hugging Face keeps q/k/v
projections apart and stores projections transposed; :func:`hf_to_clipforge` and
:func:`clipforge_to_hf` map between the two, tensor for tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from .config import CLIPConfig, ConfigError, TextConfig, VisionConfig, mlp_width
from .infer import layer_indices

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
    for hf_name, name, transposed in _name_pairs(src, hf_side=True):
        tensor = src.pop(hf_name)
        out[name] = tensor.t().contiguous() if transposed else tensor
    for hf_names, name in _qkv_names(src, hf_side=True):
        out[name] = torch.cat([src.pop(hf_name) for hf_name in hf_names])
    if src:
        raise KeyError(f"Hugging Face keys with no clipforge counterpart: {sorted(src)[:10]}")
    return out


def clipforge_to_hf(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`hf_to_clipforge`."""
    src = dict(state_dict)
    src.pop("logit_bias", None)  # SigLIP's bias: Hugging Face's CLIPModel has none
    out: dict[str, Tensor] = {}
    for hf_name, name, transposed in _name_pairs(src, hf_side=False):
        tensor = src.pop(name)
        out[hf_name] = tensor.t().contiguous() if transposed else tensor
    for hf_names, name in _qkv_names(src, hf_side=False):
        for hf_name, part in zip(hf_names, src.pop(name).chunk(3), strict=True):
            out[hf_name] = part.contiguous()
    if src:
        raise KeyError(f"clipforge keys with no Hugging Face counterpart: {sorted(src)[:10]}")
    return out


def _blocks(state_dict: dict[str, Tensor], *, hf_side: bool) -> Iterator[tuple[str, str]]:
    """(Hugging Face, clipforge) name prefixes of every transformer block in ``state_dict``,
    whose keys are on the Hugging Face side or on clipforge's."""
    for hf_prefix, prefix in _TOWERS:
        for i in layer_indices(state_dict, hf_prefix if hf_side else prefix):
            yield f"{hf_prefix}.{i}", f"{prefix}.{i}"


def _name_pairs(state_dict: dict[str, Tensor], *, hf_side: bool) -> list[tuple[str, str, bool]]:
    """(Hugging Face name, clipforge name, transposed) of every tensor but the q/k/v ones."""
    pairs = list(_TOWER_NAMES)
    for hf_block, block in _blocks(state_dict, hf_side=hf_side):
        for hf_part, part in _BLOCK_NAMES:
            for kind in ("weight", "bias"):
                pairs.append((f"{hf_block}.{hf_part}.{kind}", f"{block}.{part}.{kind}", False))
    return pairs


def _qkv_names(state_dict: dict[str, Tensor], *, hf_side: bool) -> list[tuple[list[str], str]]:
    """(Hugging Face q, k, v names, clipforge's packed name) of every attention tensor."""
    return [
        ([f"{hf_block}.self_attn.{p}_proj.{kind}" for p in "qkv"], f"{block}.attn.in_proj_{kind}")
        for hf_block, block in _blocks(state_dict, hf_side=hf_side)
        for kind in ("weight", "bias")
    ]
