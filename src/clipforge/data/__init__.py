"""Image-text and image-label sources behind one batch contract.

Each source lives in its own subpackage or module and is imported where it is used, so that
``import clipforge.data`` stays cheap; ``clipforge.data.shapes`` is the procedurally generated
shapes world that demos and tests use when no real images are at hand.

The evaluation sets (:mod:`clipforge.data.evalsets`: ``open_evalset``, ``EvalLoader``,
``EvalOptions``, ...) are re-exported here, imported on first access.
"""

from __future__ import annotations

from typing import Any

_EVALSET_NAMES = frozenset(
    {
        "LAYOUTS",
        "SHAPES_NAMES",
        "TASKS",
        "CaptionBatch",
        "ClassificationSet",
        "EvalLoader",
        "EvalOptions",
        "EvalSet",
        "LabelBatch",
        "MemberRef",
        "RetrievalSet",
        "ShapesClassificationSet",
        "ShapesRetrievalSet",
        "ShapesWordOrderSet",
        "Skipped",
        "UnreadableSample",
        "benchmark_wds",
        "detect_layout",
        "flickr_text_retrieval",
        "image_folder_classification",
        "json_retrieval",
        "normalize_templates",
        "open_caption_selection",
        "open_classification",
        "open_evalset",
        "open_retrieval",
        "table_classification",
        "table_retrieval",
    }
)

__all__ = sorted(_EVALSET_NAMES)


def __getattr__(name: str) -> Any:
    """Import :mod:`clipforge.data.evalsets` only when one of its names is first used."""
    if name in _EVALSET_NAMES:
        from clipforge.data import evalsets

        return getattr(evalsets, name)
    raise AttributeError(f"module 'clipforge.data' has no attribute {name!r}")
