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

from .common import accuracy, best_candidate, check_features, check_splits, minibatch_epochs

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
    num_classes, dim = check_features(zero_shot_weights, "zero_shot_weights").shape
    _, has_val = check_splits(
        train_features, train_labels, val_features, val_labels, num_classes=num_classes, dim=dim
    )
    zs = zero_shot_weights.detach().float()
    keys = F.normalize(train_features.detach().float(), dim=-1)  # (M, D)
    values = F.one_hot(train_labels, num_classes).float()  # (M, C)
    tip = TipAdapter(zs, keys, values, alpha, beta, logit_scale)
    tip.hparams = {
        "method": "tip-f" if finetune else "tip",
        "logit_scale": logit_scale,
        "cache_size": keys.shape[0],
    }
    if finetune:
        schedule = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
        tip.keys, history = train_cache_keys(tip, train_features, train_labels, **schedule)
        tip.hparams.update(schedule, train_alpha=alpha, train_beta=beta, history=history)
    tip.hparams["searched_on"] = None
    if has_val:
        tip.alpha, tip.beta, val_acc = search_alpha_beta(
            tip, val_features.float(), val_labels, alphas, betas
        )
        log.info("tip-adapter: alpha=%g beta=%g (val accuracy %.4f)", tip.alpha, tip.beta, val_acc)
        tip.hparams.update(searched_on="val", val_accuracy=val_acc)
    tip.hparams.update(alpha=tip.alpha, beta=tip.beta)
    return tip


def search_alpha_beta(
    tip: TipAdapter,
    features: torch.Tensor,
    labels: torch.Tensor,
    alphas: Sequence[float],
    betas: Sequence[float],
) -> tuple[float, float, float]:
    """``(alpha, beta, accuracy)`` of ``tip``'s best pair on ``features``/``labels`` (N, D)/(N,).

    The affinity is computed once and each ``beta``'s cache logits once; all ``alphas`` are
    then scored together, so the full grid costs about ``len(betas)`` matrix products.
    """
    if not alphas or not betas:
        raise ValueError("alphas and betas must each hold at least one value")
    with torch.no_grad():
        f = F.normalize(features, dim=-1)  # (N, D)
        zs_logits = tip.logit_scale * f @ tip.zero_shot_weights.T  # (N, C)
        affinity = f @ tip.keys.T  # (N, M)
        alpha_t = torch.tensor(alphas).to(f)[:, None, None]  # (A, 1, 1)
        best = (-math.inf, 0.0, 0.0)
        for beta in betas:
            cache = torch.exp(-beta * (1 - affinity)) @ tip.values  # (N, C)
            index, acc = best_candidate(zs_logits + alpha_t * cache, labels)  # over (A, N, C)
            if acc > best[0]:
                best = (acc, float(alphas[index]), float(beta))
    return best[1], best[2], best[0]


def train_cache_keys(
    tip: TipAdapter,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Tip-Adapter-F: train ``tip``'s keys (M, D) on features (N, D) and labels (N,); returns
    the trained keys and per-epoch train loss/accuracy.

    ``history[0]`` is measured before the first step, so it shows what training changed.
    """
    trained = torch.nn.Parameter(tip.keys.clone())
    optimizer = torch.optim.AdamW([trained], lr=lr, eps=1e-4)
    x = features.detach().float()

    def logits_of(batch: torch.Tensor) -> torch.Tensor:
        return tip_logits(
            batch, tip.zero_shot_weights, trained, tip.values, tip.alpha, tip.beta, tip.logit_scale
        )

    def measure(epoch: int) -> dict[str, float]:
        with torch.no_grad():
            logits = logits_of(x)
        loss = float(F.cross_entropy(logits, labels))
        return {"epoch": epoch, "train_loss": loss, "train_accuracy": accuracy(logits, labels)}

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits_of(x[batch]), labels[batch])

    history = [measure(0)]
    epochs_run = minibatch_epochs(
        optimizer, batch_loss, x.shape[0], epochs=epochs, batch_size=batch_size, seed=seed
    )
    history += [measure(epoch) for epoch, _ in enumerate(epochs_run, start=1)]
    log.info(
        "tip-adapter-f: train accuracy %.4f -> %.4f",
        history[0]["train_accuracy"],
        history[-1]["train_accuracy"],
    )
    return trained.detach(), history
