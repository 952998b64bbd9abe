"""Image-text and image-label sources behind one batch contract.

Each source lives in its own subpackage or module and is imported where it is used, so that
``import clipforge.data`` stays cheap; ``clipforge.data.shapes`` is the procedurally generated
shapes world that demos and tests use when no real images are at hand.

The evaluation sets (:mod:`clipforge.data.evalsets`: ``open_evalset``, ``EvalLoader``,
``EvalOptions``, ...) are re-exported here, imported on first access.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """Import :mod:`clipforge.data.evalsets` only when one of its names (or ``__all__``) is
    first used; its ``__all__`` is the one list of what is re-exported."""
    if name == "__all__" or not name.startswith("__"):
        evalsets = importlib.import_module("clipforge.data.evalsets")  # `from . import` recurses
        if name == "__all__" or name in evalsets.__all__:
            return getattr(evalsets, name)
    raise AttributeError(f"module 'clipforge.data' has no attribute {name!r}")
