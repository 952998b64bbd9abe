"""One precision vocabulary for every command: what a name means and what it does on a device.

=============  ==============  ===============  ==============================================
name           weights         autocast         use
=============  ==============  ===============  ==============================================
``fp32``       float32         off              the reference; exact on every device
``bf16``       bfloat16        off              inference with half the memory (weights cast)
``fp16``       float16         off              inference on GPUs (weights cast)
``amp_bf16``   float32         bfloat16         training and inference; no loss scaling needed
``amp_fp16``   float32         float16          GPU training with a loss scaler
``auto``       float32         bfloat16 or off  ``amp_bf16`` where the device runs bf16
                                                natively (GPUs, CPUs with AVX512-BF16 or AMX),
                                                else ``fp32``
=============  ==============  ===============  ==============================================

:func:`resolve_precision` turns a name and a device into a :class:`Precision`: the dtype the
weights (and inputs) take and the autocast context to run the model under. Every caller that
loads, trains or encodes with a model asks it, so ``bf16`` means the same thing in ``train``,
``eval``, ``embed`` and ``serve``.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "amp_bf16", "amp_fp16", "auto")
# Precisions that keep fp32 weights: the only ones an optimizer can update without master weights.
TRAIN_PRECISIONS: tuple[str, ...] = ("fp32", "amp_bf16", "amp_fp16", "auto")
_RENAMED = {"amp": "amp_fp16"}  # earlier releases' fp16 autocast
_WEIGHT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_AUTOCAST_DTYPES = {"amp_bf16": torch.bfloat16, "amp_fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision name that is not in the vocabulary, or not allowed where it was given."""


def check_precision(
    name: object,
    option: str = "precision",
    allowed: tuple[str, ...] = PRECISIONS,
    error: type[ValueError] = PrecisionError,
) -> str:
    """``name`` if it is one of ``allowed``; else an ``error`` naming ``option`` and what to write.

    An old spelling (``amp``) is told its new name rather than silently mapped to it, because
    the old names meant different things in different commands.
    """
    if isinstance(name, str) and name in allowed:
        return name
    choices = ", ".join(allowed)
    if isinstance(name, str) and name in _RENAMED and _RENAMED[name] in allowed:
        raise error(
            f"{option}={name!r} is an old spelling: write {_RENAMED[name]!r} (one of {choices})"
        )
    if isinstance(name, str) and name in PRECISIONS:
        raise error(f"{option}={name!r} is not allowed here; choose from {choices}")
    raise error(f"{option}={name!r} is not a precision; choose from {choices}")


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device.

    ``name`` is never ``auto``: it is what ``auto`` chose. ``weight_dtype`` is the dtype of
    the model's floating-point parameters and of the inputs fed to it; ``autocast_dtype`` is
    the dtype ``torch.autocast`` computes in, or None for no autocast.
    """

    name: str
    device_type: str
    weight_dtype: torch.dtype
    autocast_dtype: torch.dtype | None

    @property
    def loss_scaled(self) -> bool:
        """True when gradients need a loss scaler (fp16 autocast underflows small gradients)."""
        return self.name == "amp_fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context to run forward passes in: ``torch.autocast`` or a no-op."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def resolve_precision(
    name: str,
    device: str | torch.device = "cpu",
    *,
    option: str = "precision",
    allowed: tuple[str, ...] = PRECISIONS,
) -> Precision:
    """The weight dtype and autocast of precision ``name`` on ``device``."""
    name = check_precision(name, option, allowed)
    device_type = torch.device(device).type
    if name == "auto":
        name = "amp_bf16" if native_bf16(device_type) else "fp32"
    return Precision(
        name=name,
        device_type=device_type,
        weight_dtype=_WEIGHT_DTYPES.get(name, torch.float32),
        autocast_dtype=_AUTOCAST_DTYPES.get(name),
    )


def native_bf16(device_type: str) -> bool:
    """True when ``device_type`` computes in bfloat16 in hardware rather than emulating it."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    return False


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The x86 feature flags of this CPU (empty where ``/proc/cpuinfo`` does not list them)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()
