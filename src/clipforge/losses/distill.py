"""Distillation from a teacher CLIP (OpenCLIP's ``DistillClipLoss``).

The student learns from the data through InfoNCE and from the teacher through the teacher's
whole similarity distribution over the batch, which also ranks the negatives: a soft
cross-entropy between the teacher's and the student's softmax over each row, image->text and
text->image, averaged. Soft cross-entropy differs from KL(teacher || student) only by the
teacher's entropy, a constant for the student, so the gradients are the same.
"""

from __future__ import annotations

import torch

from ._common import check_features, on_global_batch
from .clip import clip_loss


def _soft_cross_entropy(
    teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``-sum_j p_ij log q_ij`` averaged over rows, p and q the softmax of logits / T (B, N)."""
    targets = torch.softmax(teacher_logits / temperature, dim=1)  # (B, N)
    log_probs = torch.log_softmax(student_logits / temperature, dim=1)  # (B, N)
    return -(targets * log_probs).sum(dim=1).mean()


def distill_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    teacher_image_features: torch.Tensor,
    teacher_text_features: torch.Tensor,
    teacher_logit_scale: torch.Tensor | float,
    distill_weight: float = 1.0,
    distill_temperature: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """InfoNCE plus distillation from a frozen teacher, (B, D) each -> scalar.

    ``clip_loss + distill_weight * T^2 * (H(p_i2t, q_i2t) + H(p_t2i, q_t2i)) / 2`` where p
    and q are the teacher's and the student's softmax over ``logits / T`` of each row, H the
    cross-entropy averaged over the B rows and ``T = distill_temperature``. The T^2 factor
    (Hinton et al., 2015) keeps the gradient size independent of T; with T = 1 and weight 1
    this is OpenCLIP's contrastive + distill loss. Teacher features (B, D') are L2-normalised
    and carry no gradient; D' may differ from the student's D. ``logit_bias`` is unused.
    """
    check_features(image_features, text_features)
    check_features(teacher_image_features, teacher_text_features, prefix="teacher_")
    if teacher_image_features.shape[0] != image_features.shape[0]:
        raise ValueError(
            f"teacher batch size {teacher_image_features.shape[0]} differs from the student's "
            f"{image_features.shape[0]}"
        )
    if distill_temperature <= 0:
        raise ValueError(f"distill_temperature must be positive, got {distill_temperature!r}")
    contrastive = clip_loss(
        image_features, text_features, logit_scale, label_smoothing=label_smoothing
    )
    student_logits = logit_scale * image_features @ text_features.T  # (B, B)
    with torch.no_grad():
        teacher_logits = teacher_logit_scale * teacher_image_features @ teacher_text_features.T
    distill = (
        _soft_cross_entropy(teacher_logits, student_logits, distill_temperature)
        + _soft_cross_entropy(teacher_logits.T, student_logits.T, distill_temperature)
    ) / 2
    return contrastive + distill_weight * distill_temperature**2 * distill


# Student features gathered with gradients, the teacher's alongside (detached).
distill_loss_distributed = on_global_batch(distill_loss)
