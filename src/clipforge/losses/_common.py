"""Input checks and the feature gather shared by the losses."""

from __future__ import annotations

import functools
from collections.abc import Callable

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


def on_global_batch(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """The form of ``loss`` that every rank calls with its local batch to score the global one.

    The pair's features are gathered with gradients, any other ``*_features`` option (a
    teacher's) is gathered alongside, detached, and every rank returns the full-batch loss. In
    one process it equals ``loss``. The signature is ``loss``'s, so that
    :func:`~clipforge.losses.loss_options` reads the same options from either form.
    """

    @functools.wraps(loss)
    def global_loss(
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
        **options: object,
    ) -> torch.Tensor:
        all_images, all_texts = gather_features(image_features, text_features)
        for key, value in options.items():
            if key.endswith("_features"):
                options[key] = all_gather_with_grad(value.detach())
        return loss(all_images, all_texts, logit_scale, logit_bias, **options)

    name = loss.__name__
    global_loss.__name__ = global_loss.__qualname__ = f"{name}_distributed"
    global_loss.__doc__ = (
        f":func:`{name}` of the batch of every rank, gathered with gradients; every rank "
        f"returns the full-batch loss. One process: :func:`{name}`."
    )
    return global_loss
