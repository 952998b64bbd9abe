"""CoOp (Zhou et al., IJCV 2022): learn the prompt's context words, keep CLIP frozen.

The prompt of class ``c`` is ``[SOT] v_1 .. v_n {name_c} . [EOT]`` where the ``v_j`` (width W)
are learned vectors in place of the token embeddings of words such as "a photo of a". They are
shared by all classes (unified context) or one set per class (class-specific), and the class
name goes at the end, the middle or the front. Only the vectors train: cross-entropy of
``logit_scale · f t_c^T`` over the few-shot image features ``f``, with ``t_c`` the normalised
text features of the prompts. The image tower is frozen and unaugmented, so features can be
computed once. Defaults follow the paper: 16 vectors, SGD (lr 2e-3, momentum 0.9, weight
decay 5e-4), cosine schedule, batch 32 (the paper's one-epoch warm-up is left out).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import CLIP
from ..tokenizer import Tokenizer
from .common import accuracy, check_features, check_splits, minibatch_epochs
from .prompt_learner import PromptLearner

log = logging.getLogger(__name__)


@dataclass
class CoOpHead:
    """Trained prompts as a classifier: ``logits = logit_scale · f W^T``, ``W`` (C, D)."""

    learner: PromptLearner
    weights: torch.Tensor  # (C, D), normalised class embeddings
    logit_scale: float

    @property
    def hparams(self) -> dict[str, Any]:
        """The learner's record (settings, loss history): saved with it, shown in results."""
        return self.learner.hparams

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) for features (N, D)."""
        check_features(features, "features", self.weights.shape[1])
        return self.logit_scale * F.normalize(features.float(), dim=-1) @ self.weights.T


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients for every parameter of ``model``; restored on exit."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    model.eval().requires_grad_(False)
    try:
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.train(was_training)


def fit_coop(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    *,
    model: CLIP,
    tokenizer: Tokenizer,
    classnames: Sequence[str],
    epochs: int = 50,
    lr: float = 2e-3,
    batch_size: int = 32,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    **prompt_options: Any,
) -> CoOpHead:
    """Train a prompt learner on image features (N, D); validation accuracy is only recorded.

    ``prompt_options`` (``n_ctx``, ``ctx_init``, ``class_specific``, ``position``) go to
    :class:`PromptLearner`, which checks them. CoOp has no hyperparameter search: every
    setting is recorded in ``hparams`` as given.
    """
    dim = model.text_projection.shape[1]
    _, has_val = check_splits(
        train_features, train_labels, val_features, val_labels, num_classes=len(classnames), dim=dim
    )
    learner = PromptLearner(model, tokenizer, classnames, seed=seed, **prompt_options)
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "momentum": momentum}
    settings.update(weight_decay=weight_decay, seed=seed)
    history = train_prompt_learner(learner, model, train_features, train_labels, **settings)
    head = coop_head(learner, model)
    learner.hparams = {
        "method": "coop",
        **learner.settings,
        **settings,
        "logit_scale": head.logit_scale,
        "history": history,
    }
    if has_val:
        head.hparams["val_accuracy"] = accuracy(head.logits(val_features), val_labels)
    return head


def train_prompt_learner(
    learner: PromptLearner,
    model: CLIP,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    seed: int,
) -> list[dict[str, float]]:
    """SGD on the context alone, the model frozen throughout; per-epoch mean train loss."""
    scale = float(model.logit_scale.detach().exp())
    x = F.normalize(features.float(), dim=-1).to(learner.ctx.device)  # (N, D)
    y = labels.to(learner.ctx.device)
    optimizer = torch.optim.SGD(
        learner.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        logits = scale * x[batch] @ learner.class_embeddings(model).T  # (B, C)
        return F.cross_entropy(logits, y[batch])

    with frozen(model):
        epochs_run = minibatch_epochs(
            optimizer, batch_loss, x.shape[0], epochs=epochs, batch_size=batch_size, seed=seed
        )
        history = [
            {"epoch": epoch, "train_loss": sum(losses) / len(losses)}
            for epoch, losses in enumerate(epochs_run, start=1)
        ]
    log.info("coop: train loss %.4f -> %.4f", history[0]["train_loss"], history[-1]["train_loss"])
    return history


def coop_head(learner: PromptLearner, model: CLIP) -> CoOpHead:
    """The classifier of a (trained or loaded) learner, with the model's logit scale."""
    with torch.no_grad():
        weights = learner.class_embeddings(model).cpu()  # (C, D)
    return CoOpHead(learner, weights, float(model.logit_scale.detach().exp()))
