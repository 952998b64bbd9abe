"""Contrastive losses: plain functions of L2-normalised features.

Every loss takes ``(image_features, text_features, logit_scale, logit_bias=None)`` with
features (B, D), row i of each forming a pair, and ``logit_scale`` already exponentiated (the
model's ``forward`` returns ``logit_scale.exp()``); it returns a scalar tensor.

``clip_loss``, ``siglip_loss``, ``infoloob_loss``, ``cloob_loss`` and ``distill_loss`` score one
batch in one process. Their ``*_distributed`` twins, and the functions :func:`create_loss`
returns, are called by every rank with its local batch and score the global batch; in one
process they equal the plain functions.

Normalisation under torch.distributed. Let L be the plain loss of the concatenated global batch
(world_size * B pairs). The distributed losses return L on every rank (CLIP with
``local_loss=False``, InfoLOOB, CLOOB, distillation) or a per-rank share whose mean over ranks
is L (CLIP with ``local_loss=True``, SigLIP): the per-rank loss is the mean over that rank's
rows. Gradients are what DDP needs: the gradient reaching a rank's features is the gradient of
the *sum* of all ranks' losses w.r.t. those rows, i.e. ``world_size`` times dL/d(rows), because
DDP then averages parameter gradients over ranks, which brings the result back to exactly
dL/d(parameters). Parameters used by every rank directly (``logit_scale``, ``logit_bias``) get
the same average. All ranks must pass batches of one size.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

from ._common import gather_features
from .clip import (
    CLIP_INIT_LOGIT_SCALE,
    CLIP_MAX_LOGIT_SCALE,
    clamp_logit_scale_,
    clip_loss,
    clip_loss_distributed,
)
from .cloob import (
    CLOOB_HOPFIELD_BETA,
    CLOOB_INV_TAU,
    cloob_loss,
    cloob_loss_distributed,
    hopfield_retrieve,
    infoloob_loss,
    infoloob_loss_distributed,
)
from .distill import distill_loss, distill_loss_distributed
from .siglip import (
    SIGLIP_INIT_LOGIT_BIAS,
    SIGLIP_INIT_LOGIT_SCALE,
    siglip_loss,
    siglip_loss_distributed,
)

# What create_loss returns: ``(image_features, text_features, logit_scale, logit_bias=None,
# **extra) -> scalar``, ``extra`` holding what a loss needs beyond the pair (a teacher's features).
LossFn = Callable[..., torch.Tensor]

# The training losses: each works in one process and, called by every rank, on the global batch.
_LOSSES: dict[str, LossFn] = {
    "clip": clip_loss_distributed,
    "siglip": siglip_loss_distributed,
    "infoloob": infoloob_loss_distributed,
    "cloob": cloob_loss_distributed,
    "distill": distill_loss_distributed,
}


def loss_names() -> list[str]:
    """The names :func:`create_loss` accepts."""
    return sorted(_LOSSES)


def loss_options(name: str) -> dict[str, Any]:
    """The options loss ``name`` takes, with their defaults: ``{"hopfield_beta": 8.0}`` for CLOOB.

    An option is a keyword-only parameter with a default; those without one (the teacher's
    features) are inputs the training step passes. The signature is thus the one list of what
    each loss can be told, which the training config and :func:`create_loss` both read.
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(loss_names())}")
    parameters = inspect.signature(_LOSSES[name]).parameters.values()
    return {p.name: p.default for p in parameters
            if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}  # fmt: skip


def create_loss(name: str, **options: Any) -> LossFn:
    """The training loss ``name`` with ``options`` (see :func:`loss_options`) bound.

    The returned function works unchanged in one process and under torch.distributed, where
    every rank calls it with its local batch (normalised as the module docstring says). An
    option the loss does not take is an error rather than silently ignored.
    """
    accepted = loss_options(name)
    for key, value in options.items():
        if key not in accepted:
            takes = ", ".join(accepted) or "no options"
            raise ValueError(f"option {key}={value!r} does not apply to loss {name!r} ({takes})")
    loss_fn = _LOSSES[name]
    return functools.partial(loss_fn, **options) if options else loss_fn


__all__ = [
    "CLIP_INIT_LOGIT_SCALE",
    "CLIP_MAX_LOGIT_SCALE",
    "CLOOB_HOPFIELD_BETA",
    "CLOOB_INV_TAU",
    "SIGLIP_INIT_LOGIT_BIAS",
    "SIGLIP_INIT_LOGIT_SCALE",
    "LossFn",
    "clamp_logit_scale_",
    "clip_loss",
    "clip_loss_distributed",
    "cloob_loss",
    "cloob_loss_distributed",
    "create_loss",
    "distill_loss",
    "distill_loss_distributed",
    "gather_features",
    "hopfield_retrieve",
    "infoloob_loss",
    "infoloob_loss_distributed",
    "loss_names",
    "loss_options",
    "siglip_loss",
    "siglip_loss_distributed",
]
