"""Zero-shot classifier heads from class names and prompt templates (the CLIP recipe)."""

from .classifier import build_classifier, encode_texts

__all__ = ["build_classifier", "encode_texts"]
