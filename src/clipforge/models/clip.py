"""CLIP: an image tower and a causal text transformer embedding into one space.

The text tower's parameters sit at the top level (``token_embedding``, ``transformer``,
``ln_final``, ``text_projection``) and the image tower under ``visual``: OpenAI's layout, which
OpenCLIP kept, so both families of checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CLIPConfig
from .layers import LayerNorm, Transformer, freeze_groups
from .resnet import ModifiedResNet
from .vit import VisionTransformer


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig) -> None:
        super().__init__()
        self.config = cfg
        vision, text = cfg.vision_cfg, cfg.text_cfg
        if vision.is_resnet:
            self.visual: nn.Module = ModifiedResNet(vision, cfg.embed_dim)
        else:
            self.visual = VisionTransformer(vision, cfg.embed_dim, cfg.quick_gelu)

        self.context_length = text.context_length
        self.token_embedding = nn.Embedding(text.vocab_size, text.width)
        self.positional_embedding = nn.Parameter(torch.empty(text.context_length, text.width))
        self.transformer = Transformer(
            text.width, text.layers, text.heads, text.mlp_ratio, cfg.quick_gelu
        )
        self.ln_final = LayerNorm(text.width)
        self.text_projection = nn.Parameter(torch.empty(text.width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(cfg.init_logit_scale))
        self.logit_bias = None
        if cfg.init_logit_bias is not None:
            self.logit_bias = nn.Parameter(torch.tensor(cfg.init_logit_bias))
        # The text tower initialised as OpenAI did; the order fixes what a seed gives.
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.transformer.init_parameters()
        nn.init.normal_(self.text_projection, std=self.transformer.width**-0.5)

    @property
    def image_size(self) -> int:
        return self.config.vision_cfg.image_size

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings: (B, 3, S, S) -> (B, D)."""
        size = self.image_size
        if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[-2:] != (size, size):
            raise ValueError(
                f"encode_image expects pixels of shape (B, 3, {size}, {size}), "
                f"got {tuple(pixels.shape)}"
            )
        return self.visual(pixels)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unnormalised text embeddings: token ids (B, L) -> (B, D).

        The tower is causal and pools at the end-of-text token (the largest id in each row), so
        the columns after the longest row's end-of-text token cannot change the result: they are
        cut off before the transformer runs, which makes short captions much cheaper than the
        full context.
        """
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"encode_text expects integer token ids of shape (B, L), "
                f"got {tuple(tokens.shape)} {tokens.dtype}"
            )
        if tokens.shape[1] > self.context_length:
            raise ValueError(
                f"tokens have length {tokens.shape[1]} but the model's context length is "
                f"{self.context_length}; tokenize with context_length={self.context_length}"
            )
        return self.encode_text_embeddings(self.token_embedding(tokens), tokens.argmax(dim=-1))

    def encode_text_embeddings(self, embeddings: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Unnormalised text embeddings from token *embeddings* (B, L, W) pooled at ``eot`` (B,).

        The second half of :meth:`encode_text`, for callers that replace some token embeddings
        with learned vectors (prompt learning). Columns after the largest ``eot`` are cut first.
        """
        length = int(eot.max()) + 1 if eot.numel() else 0
        x = embeddings[:, :length] + self.positional_embedding[:length]  # (B, L', W)
        x = self.transformer(x, causal=True)
        x = x[torch.arange(x.shape[0], device=x.device), eot]  # (B, W)
        return self.ln_final(x) @ self.text_projection  # (B, D)

    def forward(
        self, pixels: torch.Tensor | None = None, tokens: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """L2-normalised features of whichever inputs are given, with the logit scale (and bias)."""
        out = {"logit_scale": self.logit_scale.exp()}
        if pixels is not None:
            out["image_features"] = F.normalize(self.encode_image(pixels), dim=-1)
        if tokens is not None:
            out["text_features"] = F.normalize(self.encode_text(tokens), dim=-1)
        if self.logit_bias is not None:
            out["logit_bias"] = self.logit_bias
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass: less memory, about 30% more time."""
        self.visual.set_grad_checkpointing(enable)
        self.transformer.grad_checkpointing = enable

    def lock_image_tower(self, unlocked_groups: int = 0) -> None:
        """LiT: freeze the image tower except its last ``unlocked_groups`` layer groups."""
        self.visual.lock(unlocked_groups)

    def lock_text_tower(self, unlocked_layers: int = 0) -> None:
        """Freeze the text tower except its last ``unlocked_layers`` groups.

        Groups: the embeddings, each block, then the final norm with the projection.
        """
        groups = [
            [self.token_embedding, self.positional_embedding],
            *[[block] for block in self.transformer.resblocks],
            [self.ln_final, self.text_projection],
        ]
        freeze_groups(groups, unlocked_layers)
