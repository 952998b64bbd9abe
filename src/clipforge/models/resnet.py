"""OpenAI's ModifiedResNet image tower (RN50, RN101, RN50x4/x16/x64), in its parameter layout.

It differs from a torchvision ResNet in three ways: a three-convolution stem with an average
pool, anti-aliased downsampling (an average pool before each strided step), and an attention
pool instead of global average pooling at the end.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig
from .layers import freeze_groups


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                        ("1", nn.BatchNorm2d(out)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class AttentionPool2d(nn.Module):
    """One attention step whose query is the mean of the feature map, keys/values its cells."""

    def __init__(self, grid: int, width: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(grid**2 + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, width = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # (B, 1 + HW, C)
        x = x + self.positional_embedding.to(x.dtype)
        head_dim = width // self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, self.heads, head_dim).transpose(1, 2)  # (B, H, L, C/H)

        q = heads(self.q_proj(x[:, :1]))
        k, v = heads(self.k_proj(x)), heads(self.v_proj(x))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, 1, C/H)
        return self.c_proj(out.reshape(batch, width))  # (B, D)


class ModifiedResNet(nn.Module):
    def __init__(self, cfg: VisionConfig, output_dim: int) -> None:
        super().__init__()
        self.image_size = cfg.image_size
        width = cfg.width
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        stages = []
        for i, depth in enumerate(cfg.layers):
            planes = width * 2**i
            blocks = [Bottleneck(inplanes, planes, stride=1 if i == 0 else 2)]
            inplanes = planes * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, planes) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(cfg.grid_size, width * 32, cfg.heads, output_dim)
        self._frozen_bn: list[nn.BatchNorm2d] = []  # kept in eval mode by lock()
        std = self.attnpool.c_proj.in_features**-0.5
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj):
            nn.init.normal_(proj.weight, std=std)
        nn.init.normal_(self.attnpool.c_proj.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)  # each residual branch starts as identity

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(pixels)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(F.relu(self.bn3(self.conv3(x))))  # (B, W, S/4, S/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 32W, S/32, S/32)
        return self.attnpool(x)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Accepted for a uniform interface; a ResNet's activations are small, so this is a no-op."""

    def lock(self, unlocked_groups: int = 0) -> None:
        """Freeze the tower (LiT), leaving the last ``unlocked_groups`` groups trainable.

        Groups: the stem, the four stages, the attention pool. The batch norms of frozen groups
        stay in eval mode, so their running statistics do not drift.
        """
        stem = [self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3]
        groups = [stem, [self.layer1], [self.layer2], [self.layer3], [self.layer4], [self.attnpool]]
        frozen = freeze_groups(groups, unlocked_groups)
        self._frozen_bn = [
            bn for m in frozen for bn in m.modules() if isinstance(bn, nn.BatchNorm2d)
        ]
        self.train(self.training)

    def train(self, mode: bool = True) -> ModifiedResNet:
        super().train(mode)
        for bn in self._frozen_bn:
            bn.eval()
        return self
