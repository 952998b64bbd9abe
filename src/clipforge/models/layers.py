"""Building blocks shared by the towers: norm, activations, attention, the residual block.

Parameter names follow OpenAI's CLIP (``attn.in_proj_weight``, ``mlp.c_fc``, ``ln_1``) so their
checkpoints and OpenCLIP's load without renaming. Tensors are batch-first: (B, L, D).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import mlp_width


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back, so fp16/bf16 weights keep a stable norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(dtype)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the GELU approximation OpenAI's checkpoints were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a packed q/k/v projection, run by SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, L, 3D)
        qkv = qkv.view(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, D/H)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, L, D/H)
        out = out.transpose(1, 2).reshape(batch, length, width)  # (B, L, D)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool) -> None:
        super().__init__()
        hidden = mlp_width(width, mlp_ratio)
        self.ln_1 = LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, hidden),
                gelu=QuickGELU() if quick_gelu else nn.GELU(),
                c_proj=nn.Linear(hidden, width),
            )
        )

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual blocks, with optional activation checkpointing per block."""

    def __init__(
        self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool
    ) -> None:
        super().__init__()
        self.width = width
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal=causal)
        return x

    def init_parameters(self) -> None:
        """OpenAI's init: attention and MLP output projections scaled down by depth."""
        attn_std = self.width**-0.5
        proj_std = attn_std * (2 * len(self.resblocks)) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


def freeze_groups(
    groups: list[list[nn.Module | nn.Parameter]], unlocked: int
) -> list[nn.Module | nn.Parameter]:
    """Lock a tower (LiT): stop gradients in all but the last ``unlocked`` groups, first to last.

    Returns the frozen modules and parameters, for a tower that must also fix their norms.
    """
    frozen = [item for group in groups[: max(0, len(groups) - unlocked)] for item in group]
    for item in frozen:
        for param in [item] if isinstance(item, nn.Parameter) else item.parameters():
            param.requires_grad_(False)
    return frozen
