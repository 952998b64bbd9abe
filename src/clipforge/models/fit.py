"""Loading a checkpoint's weights into a model whose input sizes may differ from its own.

Position embeddings are the only tensors whose shape follows the input size (image resolution,
text context), so they are resampled to fit; every other difference is an error, because a
partial load gives a model that runs and is silently wrong.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from .clip import CLIP
from .formats import Checkpoint, CheckpointError

log = logging.getLogger(__name__)
Tensor = torch.Tensor

# Text positions kept as they are when stretching to a longer context (Long-CLIP's choice:
# the first positions are well trained, the tail is interpolated).
_KEPT_TEXT_POSITIONS = 20


def load_weights(model: CLIP, checkpoint: Checkpoint) -> None:
    """Load weights into ``model``, resizing position embeddings to the model's sizes.

    Any key the model lacks or expects, and any shape that differs after resizing, fails with
    a message listing them.
    """
    state_dict = dict(checkpoint.state_dict)
    own = model.state_dict()
    for key, resize in _RESIZERS.items():
        if key in state_dict and key in own and state_dict[key].shape != own[key].shape:
            state_dict[key] = resize(state_dict[key], own[key].shape[0])
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
        vision = model.config.vision_cfg
        tower = "ResNet" if vision.is_resnet else f"ViT/{vision.patch_size}"
        raise CheckpointError(
            f"{checkpoint.source} does not fit this {tower} {vision.image_size}px model: "
            + "; ".join(parts)
        )
    model.load_state_dict(state_dict)


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


# The tensors whose shape follows the input size, and how each is fitted to the model's.
_RESIZERS = {
    "visual.positional_embedding": resize_grid_embedding,
    "visual.attnpool.positional_embedding": resize_grid_embedding,
    "positional_embedding": resize_text_embedding,
}
