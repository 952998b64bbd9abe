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
    every rank calls it with its local batch (see :mod:`clipforge.losses` for how the result
    is normalised). An option the loss does not take is an error rather than silently ignored.
    """
    accepted = loss_options(name)
    for key, value in options.items():
        if key not in accepted:
            takes = ", ".join(accepted) or "no options"
            raise ValueError(f"option {key}={value!r} does not apply to loss {name!r} ({takes})")
    loss_fn = _LOSSES[name]
    return functools.partial(loss_fn, **options) if options else loss_fn
