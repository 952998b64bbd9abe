"""``create_loss``: the training loss by name, with its options bound."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

import torch

from .clip import clip_loss_distributed
from .cloob import cloob_loss_distributed, infoloob_loss_distributed
from .distill import distill_loss_distributed
from .siglip import siglip_loss_distributed


class LossFn(Protocol):
    """What :func:`create_loss` returns: L2-normalised (B, D) features in, scalar loss out.

    ``extra`` carries what a loss needs beyond the pair, e.g. the teacher's features for
    ``"distill"``.
    """

    def __call__(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
        **extra: Any,
    ) -> torch.Tensor: ...


# The training losses: each works in one process and, called by every rank, on the global batch.
_LOSSES: Mapping[str, LossFn] = MappingProxyType(
    {
        "clip": clip_loss_distributed,
        "siglip": siglip_loss_distributed,
        "infoloob": infoloob_loss_distributed,
        "cloob": cloob_loss_distributed,
        "distill": distill_loss_distributed,
    }
)


def loss_names() -> list[str]:
    """The names :func:`create_loss` accepts."""
    return sorted(_LOSSES)


def create_loss(
    name: str,
    *,
    local_loss: bool | None = None,
    label_smoothing: float | None = None,
    hopfield_beta: float | None = None,
    distill_weight: float | None = None,
    distill_temperature: float | None = None,
) -> LossFn:
    """The training loss ``name`` with the given options bound.

    The returned function works unchanged in one process and under torch.distributed, where
    every rank calls it with its local batch (see :mod:`clipforge.losses` for how the result
    is normalised). Options left as None keep the loss's default; setting one that the loss
    does not take is an error rather than silently ignored:

    - ``local_loss`` (clip): score only this rank's rows against the global batch.
    - ``label_smoothing`` (clip, distill): passed to the InfoNCE cross-entropy.
    - ``hopfield_beta`` (cloob): inverse temperature of the Hopfield retrieval.
    - ``distill_weight``, ``distill_temperature`` (distill): the teacher term's weight and T.
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(loss_names())}")
    loss_fn = _LOSSES[name]
    options = {
        key: value
        for key, value in {
            "local_loss": local_loss,
            "label_smoothing": label_smoothing,
            "hopfield_beta": hopfield_beta,
            "distill_weight": distill_weight,
            "distill_temperature": distill_temperature,
        }.items()
        if value is not None
    }
    accepted = inspect.signature(loss_fn).parameters
    for key, value in options.items():
        if key not in accepted:
            raise ValueError(f"option {key}={value!r} does not apply to loss {name!r}")
    return functools.partial(loss_fn, **options) if options else loss_fn
