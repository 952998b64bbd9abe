"""clipforge: one toolkit for CLIP-style contrastive language-image models."""

__version__ = "0.1.0"
