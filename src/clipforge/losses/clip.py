"""CLIP's InfoNCE loss (Radford et al., 2021).

Each image should pick out its own caption among all captions of the batch, and each caption its
own image: a cross-entropy over the rows of ``logit_scale * I @ T^T`` (B, B) with the diagonal
as the target, averaged over the two directions. The temperature is the model's: it stores
``log(1 / 0.07)`` and hands the loss ``logit_scale.exp()``; :func:`clamp_logit_scale_` keeps
the scale at or below 100 as CLIP did.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..distributed import world_info
from ._common import check_features, gather_features

# CLIP's initial temperature 0.07, stored as the log of its inverse.
CLIP_INIT_LOGIT_SCALE = math.log(1 / 0.07)
# CLIP clips the scale at 100 so that the logits cannot grow without bound.
CLIP_MAX_LOGIT_SCALE = 100.0


def clamp_logit_scale_(logit_scale: torch.Tensor, max_scale: float = CLIP_MAX_LOGIT_SCALE) -> None:
    """Clamp the model's *log* scale parameter in place so that ``exp(logit_scale) <= max_scale``.

    The trainer calls this after each optimiser step; it records no gradient.
    """
    if max_scale <= 0:
        raise ValueError(f"max_scale must be positive, got {max_scale!r}")
    with torch.no_grad():
        logit_scale.clamp_(max=math.log(max_scale))


def _infonce_rows(
    image_rows: torch.Tensor,
    text_rows: torch.Tensor,
    all_images: torch.Tensor,
    all_texts: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    label_offset: int,
    label_smoothing: float,
) -> torch.Tensor:
    """Mean InfoNCE of some rows against every column, over both directions.

    ``image_rows``/``text_rows`` (b, D) are scored against ``all_texts``/``all_images``
    (N, D); row i's positive is column ``label_offset + i``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    logits_per_image = logit_scale * image_rows @ all_texts.T  # (b, N)
    logits_per_text = logit_scale * text_rows @ all_images.T  # (b, N)
    labels = torch.arange(image_rows.shape[0], device=image_rows.device) + label_offset  # (b,)
    image_loss = F.cross_entropy(logits_per_image, labels, label_smoothing=label_smoothing)
    text_loss = F.cross_entropy(logits_per_text, labels, label_smoothing=label_smoothing)
    return (image_loss + text_loss) / 2


def clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Symmetric InfoNCE of one batch of L2-normalised pairs, (B, D) each -> scalar.

    ``(CE(s I T^T, diag) + CE(s T I^T, diag)) / 2`` with each cross-entropy the mean over the
    B rows and ``s = logit_scale`` (already exponentiated). ``label_smoothing`` is passed to
    ``torch.nn.functional.cross_entropy``. ``logit_bias`` is accepted so that every loss has
    one signature; a constant added to every logit cancels in the softmax, so it is unused.
    """
    check_features(image_features, text_features)
    return _infonce_rows(
        image_features,
        text_features,
        image_features,
        text_features,
        logit_scale,
        label_offset=0,
        label_smoothing=label_smoothing,
    )


def clip_loss_distributed(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    local_loss: bool = False,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """InfoNCE over the batch of every rank, called by all ranks with their local (B, D) pairs.

    The features of all ranks are gathered with gradients. With ``local_loss`` (OpenCLIP's
    ``--local-loss --gather-with-grad``, recommended for large runs) this rank scores its B
    images against all texts and its B texts against all images, targets offset by
    ``rank * B``: a (B, world_size * B) matrix whose mean over ranks is the full-batch
    :func:`clip_loss`. Without it (the default, so that rank 0's log shows the full-batch loss)
    every rank builds the whole (world_size * B)^2 matrix and returns the full-batch loss.
    Either way DDP's averaged gradients equal the full-batch loss's. One process:
    :func:`clip_loss`.
    """
    all_images, all_texts = gather_features(image_features, text_features)
    if not local_loss:
        return clip_loss(all_images, all_texts, logit_scale, label_smoothing=label_smoothing)
    rank, _ = world_info()
    return _infonce_rows(
        image_features,
        text_features,
        all_images,
        all_texts,
        logit_scale,
        label_offset=rank * image_features.shape[0],
        label_smoothing=label_smoothing,
    )
