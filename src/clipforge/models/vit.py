"""The Vision Transformer image tower of CLIP, in OpenAI's parameter layout."""

from __future__ import annotations

import torch
from torch import nn

from .config import VisionConfig
from .layers import LayerNorm, Transformer, freeze_groups


class VisionTransformer(nn.Module):
    """Patchify, prepend a class token, add positions, transform, project the class token.

    Patch dropout (FLIP) keeps a random subset of patch tokens per image while training, which
    cuts the cost of a step roughly in proportion; evaluation always sees every patch.
    """

    def __init__(self, cfg: VisionConfig, output_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.image_size = cfg.image_size
        self.patch_dropout = cfg.patch_dropout
        width = cfg.width
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid_size**2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.transformer.init_parameters()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.conv1(pixels)  # (B, W, g, g)
        x = x.flatten(2).transpose(1, 2)  # (B, g*g, W)
        x = x + self.positional_embedding[1:].to(x.dtype)
        if self.training and self.patch_dropout > 0:
            keep = max(1, int(x.shape[1] * (1 - self.patch_dropout)))
            idx = torch.rand(x.shape[:2], device=x.device).argsort(dim=1)[:, :keep]  # (B, keep)
            x = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # (B, keep, W)
        cls = self.class_embedding.to(x.dtype) + self.positional_embedding[0].to(x.dtype)
        x = torch.cat([cls.expand(x.shape[0], 1, -1), x], dim=1)  # (B, 1 + N, W)
        x = self.ln_pre(x)
        x = self.transformer(x)
        x = self.ln_post(x[:, 0])  # (B, W)
        return x @ self.proj  # (B, D)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def lock(self, unlocked_groups: int = 0) -> None:
        """Freeze the tower (LiT), leaving the last ``unlocked_groups`` groups trainable.

        Groups, first to last: the embeddings, each block but the last, the last block with
        the final norm, the projection.
        """
        blocks = list(self.transformer.resblocks)
        groups = [
            [self.conv1, self.class_embedding, self.positional_embedding, self.ln_pre],
            *[[block] for block in blocks[:-1]],
            [blocks[-1], self.ln_post],
            [self.proj],
        ]
        freeze_groups(groups, unlocked_groups)
