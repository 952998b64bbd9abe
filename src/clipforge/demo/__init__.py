"""``clipforge demo``: train a small CLIP on the shapes world on CPU, evaluate it, report."""

from .run import run_demo

__all__ = ["run_demo"]
