"""SigLIP's sigmoid loss (Zhai et al., 2023).

Every image-text pair of the batch is its own binary problem: matching (the diagonal) or not.
With ``z_ij = +1`` on the diagonal and -1 elsewhere,

    loss = -1/B * sum_i sum_j log sigmoid(z_ij * (t * x_i . y_j + b)),

the paper's normalisation: summed over the columns, averaged over the rows. No softmax couples
the rows, so a rank can sum its rows' terms chunk by chunk while the texts travel around the
ring of ranks, and never holds the global similarity matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..distributed import ring_exchange, world_info
from ._common import check_features

# The paper's initial temperature t = 10 (stored as its log) and bias b = -10: at the start
# almost every pair is a negative, so the bias starts the model near the negatives' prior.
SIGLIP_INIT_LOGIT_SCALE = math.log(10.0)
SIGLIP_INIT_LOGIT_BIAS = -10.0


def _sigmoid_loss_sum(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float,
    *,
    with_positives: bool,
) -> torch.Tensor:
    """Sum of ``-log sigmoid(z * logit)`` over the (B, C) block of ``image_features`` (B, D)
    against ``text_features`` (C, D). ``with_positives``: the block's diagonal holds the
    matching pairs (z = +1); otherwise every pair is a negative."""
    logits = logit_scale * image_features @ text_features.T + logit_bias  # (B, C)
    signs = torch.full_like(logits, -1.0)  # (B, C)
    if with_positives:
        signs.fill_diagonal_(1.0)
    return -F.logsigmoid(signs * logits).sum()


def siglip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Sigmoid loss of one batch of L2-normalised pairs, (B, D) each -> scalar.

    ``logit_scale`` is the exponentiated temperature t and ``logit_bias`` the bias b, both
    learnt by the model (init :data:`SIGLIP_INIT_LOGIT_SCALE`, :data:`SIGLIP_INIT_LOGIT_BIAS`).
    The bias is required: without it the loss is dominated by the B^2 - B negatives.
    """
    check_features(image_features, text_features)
    if logit_bias is None:
        raise ValueError(
            "siglip_loss needs logit_bias (the model's learnt bias, initialised to "
            f"{SIGLIP_INIT_LOGIT_BIAS}); got None"
        )
    total = _sigmoid_loss_sum(
        image_features, text_features, logit_scale, logit_bias, with_positives=True
    )
    return total / image_features.shape[0]


def siglip_loss_distributed(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Sigmoid loss over the batch of every rank, called by all ranks with their local pairs.

    Each rank keeps its B images; the texts move one rank around the ring per step
    (``world_size - 1`` exchanges of a (B, D) block, gradients flowing back the same way), and
    the rank sums its rows' terms against every block. The result is divided by the local B:
    the mean over ranks equals :func:`siglip_loss` of the concatenated batch, and DDP's
    averaged gradients equal its gradients. Memory stays (B, B) per step, never
    (world_size * B)^2. One process: :func:`siglip_loss`.
    """
    loss = siglip_loss(image_features, text_features, logit_scale, logit_bias)
    texts = text_features
    for _ in range(world_info()[1] - 1):
        texts = ring_exchange(texts)  # the texts of the rank one further to the left
        negatives = _sigmoid_loss_sum(
            image_features, texts, logit_scale, logit_bias, with_positives=False
        )
        loss = loss + negatives / image_features.shape[0]
    return loss
