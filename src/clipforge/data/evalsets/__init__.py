"""Evaluation datasets: classification, multi-label, retrieval and caption selection.

Every set is a map-style dataset of ``(pixels, target)`` whose metadata (labels, class names,
templates, captions) is read when it is opened; :class:`EvalLoader` batches it in order and
skips, counts and logs unreadable images. :func:`open_evalset` opens a set from a registry
name (``shapes/...``) or a path whose layout is detected.

Modules: ``base`` (the contract), ``classification`` (image folders, tables), ``retrieval``
(tables, Karpathy/COCO JSON, Flickr text), ``benchmark_wds`` (CLIP_benchmark webdataset
folders), ``shapes_views`` (the shapes world), ``loader`` (batching) and ``registry`` (names
and layout detection); tables are read by :mod:`clipforge.data.tables`.
"""

from clipforge.data.evalsets.base import (
    TASKS,
    ClassificationSet,
    EvalSet,
    MemberRef,
    RetrievalSet,
)
from clipforge.data.evalsets.benchmark_wds import benchmark_wds
from clipforge.data.evalsets.classification import (
    image_folder_classification,
    normalize_templates,
    table_classification,
)
from clipforge.data.evalsets.loader import CaptionBatch, EvalLoader, LabelBatch, Skipped
from clipforge.data.evalsets.registry import (
    SHAPES_NAMES,
    EvalOptions,
    detect_layout,
    open_evalset,
)
from clipforge.data.evalsets.retrieval import (
    flickr_text_retrieval,
    json_retrieval,
    table_retrieval,
)
from clipforge.data.evalsets.shapes_views import (
    ShapesClassificationSet,
    ShapesRetrievalSet,
    ShapesWordOrderSet,
)

__all__ = [
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
    "benchmark_wds",
    "detect_layout",
    "flickr_text_retrieval",
    "image_folder_classification",
    "json_retrieval",
    "normalize_templates",
    "open_evalset",
    "table_classification",
    "table_retrieval",
]
