"""Linear probe: L2-regularised multinomial logistic regression on frozen features.

The CLIP paper's protocol: fit logistic regression on the features, choose the regularisation
strength ``λ`` on a validation split, refit with it. The objective, with ``λ`` the
inverse of scikit-learn's ``C`` so values compare with the paper's, is

    J(W, b) = Σ_i CE(W x_i + b, y_i) + (λ / 2) ||W||_F²        W: (C, D), b: (C,) unpenalised

(minimised in the equivalent form ``J / N`` for conditioning). The search is the paper's
"parametric binary search": evaluate ``log10 λ`` on ``-6, -4, ..., 6``, then repeatedly halve
the step and try both neighbours of the best value so far, down to 8 steps per decade. Each
fit is full-batch L-BFGS in float64 on the CPU (deterministic), warm-started from the
solution of the nearest ``λ`` already fitted. Ties in validation accuracy go to the lower
validation cross-entropy, then to the larger ``λ``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .common import accuracy, check_features, check_splits, load_head, save_head

log = logging.getLogger(__name__)

LOG10_LAMBDA_RANGE = (-6.0, 6.0)
COARSE_STEP = 2.0  # decades between the first grid's values
FINEST_STEP = 0.125  # 8 steps per decade, where the binary search stops


@dataclass
class LinearProbe:
    """A fitted linear head: ``logits = x W^T + b`` with ``x`` L2-normalised if ``normalize``."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    normalize: bool = True
    hparams: dict[str, Any] = field(default_factory=dict)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) for features (N, D)."""
        x = _prepare(check_features(features, "features", self.weight.shape[1]), self.normalize)
        return x.to(self.weight.dtype) @ self.weight.T + self.bias

    def save(self, path: str | os.PathLike) -> None:
        meta = {"normalize": self.normalize, "hparams": self.hparams}
        save_head(path, "linear", {"weight": self.weight, "bias": self.bias}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LinearProbe:
        tensors, meta = load_head(path, "linear", ("weight", "bias"), ("normalize", "hparams"))
        return cls(tensors["weight"], tensors["bias"], bool(meta["normalize"]), meta["hparams"])


def logistic_objective(
    features: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    lam: float,
) -> torch.Tensor:
    """``J / N`` of the module docstring: mean cross-entropy + ``λ ||W||² / (2N)``."""
    n = features.shape[0]
    ce = F.cross_entropy(features @ weight.T + bias, labels, reduction="sum")
    return (ce + 0.5 * lam * weight.square().sum()) / n


def fit_logistic(
    features: torch.Tensor,
    labels: torch.Tensor,
    lam: float,
    *,
    num_classes: int,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise the objective for one ``λ``: float64 ``(W (C, D), b (C,))``, ``b`` centred.

    The solver works on centred features ``x - m``: as ``b`` is not penalised,
    ``W (x - m) + b'`` is the same model as ``W x + b`` with ``b = b' - W m``, so the optimum
    is unchanged while L-BFGS converges in far fewer steps (CLIP features share a large
    common direction). It stops when the largest gradient entry of ``J / N`` is below 1e-8,
    when ``J / N`` changes by less than 1e-12, or after ``max_iter`` iterations. The softmax
    ignores a shift of all logits, so ``b`` is returned with mean zero, which makes it unique.
    """
    x = features.double()
    mean = x.mean(dim=0)  # (D,)
    x = x - mean
    if init is None:
        weight = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device)
        bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device)
    else:
        weight = init[0].detach().double().clone()
        bias = init[1].detach().double() + weight @ mean  # the same model, centred inputs
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-8,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = logistic_objective(x, labels, weight, bias, lam)
        loss.backward()
        return loss

    optimizer.step(closure)
    weight = weight.detach()
    bias = bias.detach() - weight @ mean
    return weight, bias - bias.mean()


def fit_linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    lam: float | None = None,
    refit_with_val: bool = True,
    normalize: bool = True,
    max_iter: int = 1000,
) -> LinearProbe:
    """Fit the probe; ``λ`` is searched on the validation split unless ``lam`` is given.

    After the search the probe is refitted with the best ``λ`` on train, or on train + val
    when ``refit_with_val``. ``hparams`` records ``lambda``, the whole sweep and the refit set.
    """
    num_classes, has_val = check_splits(
        train_features, train_labels, val_features, val_labels, num_classes=num_classes
    )
    if lam is None and not has_val:
        raise ValueError("fit_linear_probe needs val_features/val_labels to search lambda, or lam")
    if lam is not None and not lam > 0:
        raise ValueError(f"lam must be positive, got {lam!r}")
    x = _prepare(train_features, normalize)
    x_val = _prepare(val_features, normalize) if has_val else None
    fit_kw: dict[str, Any] = {"num_classes": num_classes, "max_iter": max_iter}
    sweep: list[dict[str, float]] = []
    init = None
    if lam is None:
        lam, init, sweep = _search_lambda(x, train_labels, x_val, val_labels, fit_kw)
        log.info("linear probe: lambda=%.4g chosen on validation (%d fits)", lam, len(sweep))
    refit_on_val = has_val and refit_with_val
    if refit_on_val:
        x, train_labels = torch.cat([x, x_val]), torch.cat([train_labels, val_labels])
    weight, bias = fit_logistic(x, train_labels, lam, init=init, **fit_kw)
    hparams = {
        "method": "linear",
        "lambda": lam,
        "refit_on": "train+val" if refit_on_val else "train",
        "normalize": normalize,
        "max_iter": max_iter,
        "sweep": sweep,
    }
    return LinearProbe(weight.float(), bias.float(), normalize, hparams)


def _search_lambda(
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    fit_kw: dict[str, Any],
) -> tuple[float, tuple[torch.Tensor, torch.Tensor], list[dict[str, float]]]:
    """Best ``λ``, its solution, and every ``(λ, val accuracy, val loss)`` tried, in λ order."""
    scores: dict[float, tuple[float, float]] = {}  # log10 λ -> (val accuracy, val loss)
    solutions: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def evaluate(log_lam: float) -> None:
        nearest = min(solutions, key=lambda s: abs(s - log_lam), default=None)
        init = solutions.get(nearest) if nearest is not None else None
        weight, bias = fit_logistic(x, y, 10.0**log_lam, init=init, **fit_kw)
        solutions[log_lam] = (weight, bias)
        logits = x_val.double() @ weight.T + bias
        scores[log_lam] = (accuracy(logits, y_val), float(F.cross_entropy(logits, y_val)))

    def best() -> float:
        return max(scores, key=lambda s: (scores[s][0], -scores[s][1], s))

    low, high = LOG10_LAMBDA_RANGE
    log_lam = high
    while log_lam >= low:  # strongest regularisation first: each fit warm-starts the next
        evaluate(log_lam)
        log_lam -= COARSE_STEP
    step = COARSE_STEP
    while step > FINEST_STEP:
        step /= 2
        centre = best()
        for candidate in (centre - step, centre + step):
            if low <= candidate <= high and candidate not in scores:
                evaluate(candidate)
    chosen = best()
    sweep = [
        {"lambda": 10.0**s, "val_accuracy": scores[s][0], "val_loss": scores[s][1]}
        for s in sorted(scores)
    ]
    return 10.0**chosen, solutions[chosen], sweep


def _prepare(features: torch.Tensor, normalize: bool) -> torch.Tensor:
    return F.normalize(features, dim=-1) if normalize else features
