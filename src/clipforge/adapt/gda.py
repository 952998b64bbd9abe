"""GDA: Gaussian discriminant analysis on frozen features, beside the zero-shot head.

Wang et al., "A Hard-to-Beat Baseline for Training-free CLIP-based Adaptation" (ICLR 2024):
model each class as a Gaussian with mean ``mu_c`` and one covariance ``Σ`` shared by all
classes. Bayes' rule then gives a linear classifier

    W = μ Σ^{-1}   (C, D)       b_c = log π_c - ½ μ_c^T Σ^{-1} μ_c        (Σ symmetric)

with ``π_c`` the class frequencies of the training split. Few shots cannot estimate a D x D
covariance, so ``Σ`` is shrunk towards a scaled identity (Ledoit & Wolf, 2004):

    S = (1/N) Σ_i (x_i - μ_{y_i})(x_i - μ_{y_i})^T        m = tr(S) / D
    Σ = (1 - ρ) S + ρ m I
    ρ = min(β̄, δ) / δ,   δ = ||S - m I||_F²,   β̄ = (1/N²) Σ_i ||z_i z_i^T - S||_F²
                                                  = (Σ_i ||z_i||⁴ - N ||S||_F²) / N²

(``z_i`` the centred samples), or a fixed ``ρ`` when ``shrinkage`` is given. The result is
combined with zero-shot as ``logits = s · f W_zs^T + alpha · (x W^T + b)`` (``f`` the
normalised feature, ``s`` = 100), ``alpha`` chosen on validation over ``10^-4 .. 10^4``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .common import best_candidate, check_features, check_splits

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = tuple(10.0 ** (i / 4) for i in range(-16, 17))  # 1e-4 .. 1e4, 4 per decade


@dataclass
class GDAHead:
    """A fitted GDA classifier, optionally added to a zero-shot head (``zero_shot_weights``)."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    zero_shot_weights: torch.Tensor | None = None  # (C, D)
    alpha: float = 1.0
    normalize: bool = True
    logit_scale: float = 100.0
    hparams: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) for features (N, D)."""
        check_features(features, "features", self.weight.shape[1])
        return _combine(features, self, torch.tensor([self.alpha]))[0]


def ledoit_wolf_shrinkage(centered: torch.Tensor) -> float:
    """The Ledoit–Wolf ``ρ`` in [0, 1] for centred samples (N, D) (formula in the docstring)."""
    n, dim = centered.shape
    z = centered.double()
    s = z.T @ z / n  # (D, D)
    m = s.trace() / dim
    delta = (s - m * torch.eye(dim, dtype=z.dtype, device=z.device)).square().sum()
    if delta == 0:
        return 1.0  # S is already a multiple of the identity
    beta_bar = (z.square().sum(dim=1).square().sum() - n * s.square().sum()) / n**2
    return float(torch.clamp(beta_bar, min=0.0).minimum(delta) / delta)


def gda_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    shrinkage: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(W (C, D), b (C,), ρ)`` in float64 from features (N, D) and labels (N,)."""
    x = features.double()
    counts = torch.bincount(labels, minlength=num_classes)  # (C,)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"GDA needs samples of every class; classes {missing[:10]} have none")
    means = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device)
    means.index_add_(0, labels, x)
    means /= counts[:, None]  # (C, D)
    centered = x - means[labels]  # (N, D)
    scatter = centered.T @ centered / x.shape[0]  # (D, D)
    if scatter.trace() == 0:
        raise ValueError(
            "GDA cannot estimate a covariance: every class has identical samples "
            "(e.g. one shot per class); use at least two shots"
        )
    if shrinkage is None:
        rho = ledoit_wolf_shrinkage(centered)
    elif 0.0 <= shrinkage <= 1.0:
        rho = float(shrinkage)
    else:
        raise ValueError(f"shrinkage must be in [0, 1] or None (Ledoit-Wolf), got {shrinkage!r}")
    identity = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    covariance = (1 - rho) * scatter + rho * scatter.trace() / x.shape[1] * identity
    weight = torch.linalg.solve(covariance, means.T).T  # (C, D): rows Σ^{-1} μ_c
    bias = torch.log(counts.double() / x.shape[0]) - 0.5 * (weight * means).sum(dim=1)
    return weight, bias, rho


def fit_gda(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    *,
    zero_shot_weights: torch.Tensor | None = None,
    num_classes: int | None = None,
    shrinkage: float | None = None,
    normalize: bool = True,
    alpha: float = 1.0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    logit_scale: float = 100.0,
) -> GDAHead:
    """Fit GDA; with a zero-shot head and a validation split, ``alpha`` is searched.

    Without ``zero_shot_weights`` the head is plain GDA (``alpha`` only scales the logits and
    a validation split has nothing to choose). ``normalize`` L2-normalises features before
    fitting, as CLIP features are compared by angle.
    """
    dim = None
    if zero_shot_weights is not None:
        num_classes, dim = check_features(zero_shot_weights, "zero_shot_weights").shape
        zero_shot_weights = zero_shot_weights.detach().float()
    num_classes, has_val = check_splits(
        train_features, train_labels, val_features, val_labels, num_classes=num_classes, dim=dim
    )
    x = F.normalize(train_features, dim=-1) if normalize else train_features
    weight, bias, rho = gda_classifier(x, train_labels, num_classes, shrinkage)
    head = GDAHead(weight.float(), bias.float(), zero_shot_weights, alpha, normalize, logit_scale)
    head.hparams = {
        "method": "gda",
        "shrinkage": rho,
        "shrinkage_rule": "ledoit-wolf" if shrinkage is None else "fixed",
        "normalize": normalize,
        "logit_scale": logit_scale,
        "searched_on": None,
    }
    if has_val and zero_shot_weights is not None:
        alpha_t = torch.tensor(list(alphas), dtype=torch.float32)  # (A,)
        index, val_acc = best_candidate(_combine(val_features, head, alpha_t), val_labels)
        head.alpha = float(alphas[index])
        head.hparams.update(searched_on="val", val_accuracy=val_acc)
        log.info("gda: alpha=%g (val accuracy %.4f)", head.alpha, val_acc)
    head.hparams["alpha"] = head.alpha
    return head


def _combine(features: torch.Tensor, head: GDAHead, alphas: torch.Tensor) -> torch.Tensor:
    """Logits (A, N, C) for features (N, D), one slice per alpha in ``alphas`` (A,)."""
    f = features.float()
    x = F.normalize(f, dim=-1) if head.normalize else f
    gda = x @ head.weight.T + head.bias  # (N, C)
    out = alphas.to(f)[:, None, None] * gda  # (A, N, C)
    if head.zero_shot_weights is not None:
        out = out + head.logit_scale * F.normalize(f, dim=-1) @ head.zero_shot_weights.T
    return out
