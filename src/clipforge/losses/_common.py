"""Input checks and the feature gather shared by the losses."""

from __future__ import annotations

import torch

from ..distributed import all_gather_with_grad


def check_features(
    image_features: torch.Tensor, text_features: torch.Tensor, *, prefix: str = ""
) -> None:
    """Raise unless both are (B, D) with the same B and D: row i of each is one pair.

    ``prefix`` names the arguments in the message (``"teacher_"`` for a teacher's features).
    """
    if (
        image_features.dim() != 2
        or text_features.dim() != 2
        or image_features.shape != text_features.shape
    ):
        raise ValueError(
            f"{prefix}image_features and {prefix}text_features must both be (B, D) with the "
            f"same B and D, got {tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )


def gather_features(
    image_features: torch.Tensor, text_features: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch across ranks, with gradients: (B, D) each -> (world_size * B, D) each.

    Row ``rank * B + i`` of the result is row ``i`` of that rank, so pairs stay aligned.
    A single process gets its inputs back.
    """
    check_features(image_features, text_features)
    return all_gather_with_grad(image_features), all_gather_with_grad(text_features)
