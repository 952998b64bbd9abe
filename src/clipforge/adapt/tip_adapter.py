"""Tip-Adapter (Zhang et al., ECCV 2022): a key-value cache of the few-shot set beside zero-shot.

The cache holds keys ``F`` (M, D), the L2-normalised training features (M = C·K), and values
``L`` (M, C), their one-hot labels. For a normalised test feature ``f`` (1, D):

    logits = s · f W_zs^T + alpha · exp(-beta · (1 - f F^T)) L          s = 100 (CLIP's scale)

``beta`` sharpens the affinity to the cached shots, ``alpha`` weighs the cache against the
zero-shot head ``W_zs`` (C, D). Tip-Adapter is training-free; Tip-Adapter-F makes the keys a
parameter initialised from ``F`` and trains them with cross-entropy and AdamW on the few-shot
set (the paper's settings: lr 1e-3, eps 1e-4, cosine schedule, batch 256, 20 epochs).
Both then search ``alpha`` and ``beta`` on the validation split over the paper's ranges
(``beta`` in [0.1, 7], ``alpha`` in [0.1, 3]); ties go to the first pair in grid order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .common import accuracy, check_features, check_split, check_val_pair

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(round(0.1 + 0.1 * i, 4) for i in range(30))  # 0.1 .. 3.0
DEFAULT_BETAS = tuple(round(0.1 + 0.1 * i, 4) for i in range(70))  # 0.1 .. 7.0


def tip_logits(
    features: torch.Tensor,
    zero_shot_weights: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    alpha: float,
    beta: float,
    logit_scale: float = 100.0,
) -> torch.Tensor:
    """The formula of the module docstring; ``features`` (N, D) are normalised here. -> (N, C)"""
    f = F.normalize(features, dim=-1)  # (N, D)
    affinity = f @ keys.T  # (N, M)
    cache = torch.exp(-beta * (1 - affinity)) @ values  # (N, C)
    return logit_scale * f @ zero_shot_weights.T + alpha * cache


@dataclass
class TipAdapter:
    """A fitted cache model; ``hparams`` records alpha, beta and how they were found."""

    zero_shot_weights: torch.Tensor  # (C, D)
    keys: torch.Tensor  # (M, D)
    values: torch.Tensor  # (M, C)
    alpha: float
    beta: float
    logit_scale: float = 100.0
    hparams: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) for features (N, D)."""
        check_features(features, "features", self.keys.shape[1])
        return tip_logits(
            features.to(self.keys.dtype),
            self.zero_shot_weights,
            self.keys,
            self.values,
            self.alpha,
            self.beta,
            self.logit_scale,
        )


def fit_tip_adapter(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    *,
    zero_shot_weights: torch.Tensor,
    finetune: bool = False,
    alpha: float = 1.0,
    beta: float = 1.0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    betas: Sequence[float] = DEFAULT_BETAS,
    logit_scale: float = 100.0,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
) -> TipAdapter:
    """Build the cache (and train its keys when ``finetune``: Tip-Adapter-F).

    ``alpha``/``beta`` are used while training and kept when no validation split is given;
    with one, the pair is searched over ``alphas`` x ``betas`` after training.
    """
    if zero_shot_weights.ndim != 2:
        raise ValueError(f"zero_shot_weights must be (C, D), got {tuple(zero_shot_weights.shape)}")
    num_classes, dim = zero_shot_weights.shape
    check_split(train_features, train_labels, "train", num_classes=num_classes, dim=dim)
    zs = zero_shot_weights.detach().float()
    keys = F.normalize(train_features.detach().float(), dim=-1)  # (M, D)
    values = F.one_hot(train_labels, num_classes).float()  # (M, C)
    hparams: dict[str, Any] = {
        "method": "tip-f" if finetune else "tip",
        "logit_scale": logit_scale,
        "cache_size": keys.shape[0],
    }
    if finetune:
        keys, history = train_cache_keys(
            train_features,
            train_labels,
            zs,
            keys,
            values,
            alpha=alpha,
            beta=beta,
            logit_scale=logit_scale,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
        )
        hparams.update(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        hparams.update(train_alpha=alpha, train_beta=beta, history=history)
    if check_val_pair(val_features, val_labels):
        check_split(val_features, val_labels, "val", num_classes=num_classes, dim=dim)
        alpha, beta, val_acc = search_alpha_beta(
            val_features.float(), val_labels, zs, keys, values, alphas, betas, logit_scale
        )
        log.info("tip-adapter: alpha=%g beta=%g (val accuracy %.4f)", alpha, beta, val_acc)
        hparams.update(searched_on="val", val_accuracy=val_acc)
    else:
        hparams.update(searched_on=None)
    hparams.update(alpha=alpha, beta=beta)
    return TipAdapter(zs, keys, values, alpha, beta, logit_scale, hparams)


def search_alpha_beta(
    features: torch.Tensor,
    labels: torch.Tensor,
    zero_shot_weights: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    alphas: Sequence[float],
    betas: Sequence[float],
    logit_scale: float = 100.0,
) -> tuple[float, float, float]:
    """``(alpha, beta, accuracy)`` of the best pair on ``features``/``labels`` (N, D)/(N,).

    The affinity is computed once and each ``beta``'s cache logits once; all ``alphas`` are
    then scored together, so the full grid costs about ``len(betas)`` matrix products.
    """
    if not alphas or not betas:
        raise ValueError("alphas and betas must each hold at least one value")
    with torch.no_grad():
        f = F.normalize(features, dim=-1)  # (N, D)
        zs_logits = logit_scale * f @ zero_shot_weights.T  # (N, C)
        affinity = f @ keys.T  # (N, M)
        alpha_t = torch.tensor(alphas).to(f)[:, None, None]  # (A, 1, 1)
        best = (-math.inf, 0.0, 0.0)
        for beta in betas:
            cache = torch.exp(-beta * (1 - affinity)) @ values  # (N, C)
            predictions = (zs_logits + alpha_t * cache).argmax(dim=-1)  # (A, N)
            accuracies = (predictions == labels).double().mean(dim=-1)  # (A,)
            index = int(accuracies.argmax())
            if accuracies[index] > best[0]:
                best = (float(accuracies[index]), float(alphas[index]), float(beta))
    return best[1], best[2], best[0]


def train_cache_keys(
    features: torch.Tensor,
    labels: torch.Tensor,
    zero_shot_weights: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    logit_scale: float,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Tip-Adapter-F: train the keys (M, D); returns them and per-epoch train loss/accuracy.

    ``history[0]`` is measured before the first step, so it shows what training changed.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    trained = torch.nn.Parameter(keys.clone())
    optimizer = torch.optim.AdamW([trained], lr=lr, eps=1e-4)
    steps_per_epoch = math.ceil(features.shape[0] / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    x = features.detach().float()

    def logits_of(batch: torch.Tensor) -> torch.Tensor:
        return tip_logits(batch, zero_shot_weights, trained, values, alpha, beta, logit_scale)

    def measure(epoch: int) -> dict[str, float]:
        with torch.no_grad():
            logits = logits_of(x)
        loss = float(F.cross_entropy(logits, labels))
        return {"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy(logits, labels)}

    history = [measure(0)]
    for epoch in range(1, epochs + 1):
        for batch in torch.randperm(x.shape[0], generator=generator).split(batch_size):
            loss = F.cross_entropy(logits_of(x[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        history.append(measure(epoch))
    log.info(
        "tip-adapter-f: train accuracy %.4f -> %.4f",
        history[0]["train_accuracy"],
        history[-1]["train_accuracy"],
    )
    return trained.detach(), history
