"""InfoLOOB and CLOOB (Fürst et al., 2022, "CLOOB: Modern Hopfield Networks with InfoLOOB
Outperform CLIP").

InfoLOOB is InfoNCE with the positive pair left out of the denominator:

    l_i = -log( exp(s_ii) / sum_{j != i} exp(s_ij) ),   s = logit_scale * X @ Y^T.

It no longer saturates once the positive dominates its row, which InfoNCE does. CLOOB first
replaces every embedding by what a modern Hopfield network retrieves for it from the batch,
which strengthens the covariance structure shared by the batch, and then applies InfoLOOB:

    U_x = retrieve(images from images)    U_y = retrieve(images from texts)
    V_x = retrieve(texts from images)     V_y = retrieve(texts from texts)
    loss = tau * ( mean_i l_i(U_x vs U_y) + mean_i l_i(V_y vs V_x) ),   tau = 1 / logit_scale.

Both terms compare patterns retrieved from the same memory (images in the first, texts in the
second); the first ranks row i over the image-anchored matrix U_x U_y^T, the second over the
text-anchored V_y V_x^T, as in CLOOB's reference code. The factor tau, also from that code,
keeps the gradient w.r.t. the embeddings from growing with the inverse temperature. CLOOB keeps
the inverse temperature fixed at 30 (:data:`CLOOB_INV_TAU`) rather than learning it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import check_features, on_global_batch

# CLOOB's fixed inverse temperature 1/tau for InfoLOOB.
CLOOB_INV_TAU = 30.0
# Inverse temperature beta of the Hopfield retrieval: 8 in CLOOB's Conceptual Captions runs
# (the paper uses 14.3 on YFCC).
CLOOB_HOPFIELD_BETA = 8.0


def hopfield_retrieve(
    state_patterns: torch.Tensor, stored_patterns: torch.Tensor, beta: float
) -> torch.Tensor:
    """One update of a modern Hopfield network, renormalised: (M, D), (N, D) -> (M, D).

    Each state pattern (the query) is replaced by ``softmax(beta * stored @ state)``-weighted
    average of the stored patterns, then scaled back to unit length. Larger ``beta`` retrieves
    closer to the single nearest stored pattern; smaller averages more of them.
    """
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    weights = torch.softmax(beta * state_patterns @ stored_patterns.T, dim=-1)  # (M, N)
    return F.normalize(weights @ stored_patterns, dim=-1)  # (M, D)


def _loob_rows(
    anchors: torch.Tensor, candidates: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Mean over rows i of ``-s_ii + logsumexp_{j != i} s_ij`` with s = scale * A C^T (B, B)."""
    logits = logit_scale * anchors @ candidates.T  # (B, B)
    leave_one_out = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
    negatives = logits.masked_fill(leave_one_out, float("-inf")).logsumexp(dim=1)  # (B,)
    return (negatives - logits.diagonal()).mean()


def _infoloob(
    image_anchors: torch.Tensor,
    image_candidates: torch.Tensor,
    text_anchors: torch.Tensor,
    text_candidates: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    if image_anchors.shape[0] < 2:
        raise ValueError(
            f"InfoLOOB needs a batch of at least 2 pairs (each row needs a negative), got "
            f"{image_anchors.shape[0]}"
        )
    image_term = _loob_rows(image_anchors, image_candidates, logit_scale)
    text_term = _loob_rows(text_anchors, text_candidates, logit_scale)
    return (image_term + text_term) / logit_scale


def infoloob_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Symmetric InfoLOOB of one batch of L2-normalised pairs, (B, D) each -> scalar, B >= 2.

    ``(mean_i l_i(I vs T) + mean_i l_i(T vs I)) / logit_scale``: CLOOB's objective without the
    Hopfield step, normalised as CLOOB normalises it (see the module docstring). Unlike
    InfoNCE it can go below zero. ``logit_bias`` cancels in the log-ratio and is unused.
    """
    check_features(image_features, text_features)
    return _infoloob(image_features, text_features, text_features, image_features, logit_scale)


def cloob_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    hopfield_beta: float = CLOOB_HOPFIELD_BETA,
) -> torch.Tensor:
    """CLOOB: InfoLOOB on Hopfield-retrieved features, (B, D) each -> scalar, B >= 2.

    The batch itself is the Hopfield memory; see the module docstring for the four retrievals
    and how they are paired. ``logit_scale`` is InfoLOOB's inverse temperature
    (CLOOB: :data:`CLOOB_INV_TAU`), ``hopfield_beta`` the retrieval's. ``logit_bias`` is unused.
    """
    check_features(image_features, text_features)
    images_from_images = hopfield_retrieve(image_features, image_features, hopfield_beta)  # U_x
    images_from_texts = hopfield_retrieve(text_features, image_features, hopfield_beta)  # U_y
    texts_from_images = hopfield_retrieve(image_features, text_features, hopfield_beta)  # V_x
    texts_from_texts = hopfield_retrieve(text_features, text_features, hopfield_beta)  # V_y
    return _infoloob(
        images_from_images, images_from_texts, texts_from_texts, texts_from_images, logit_scale
    )


# Every rank scores the whole gathered batch: the Hopfield memory is the global batch too.
infoloob_loss_distributed = on_global_batch(infoloob_loss)
cloob_loss_distributed = on_global_batch(cloob_loss)
