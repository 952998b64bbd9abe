"""Opening an evaluation set from one string: a registry name or a path whose layout is detected.

Names: ``shapes/shape``, ``shapes/colour``, ``shapes/heldout``, ``shapes/retrieval``,
``shapes/word-order`` (see :mod:`clipforge.data.evalsets.shapes_views`). Paths:

==========================================  ===================  ========================
path                                        layout               tasks
==========================================  ===================  ========================
folder with ``<split>/nshards.txt`` or      ``benchmark_wds``    by ``dataset_type.txt``
``dataset_type.txt``
other folder (of class folders)             ``image_folder``     classification
``.csv`` / ``.tsv`` / ``.parquet``          ``table``            classification (a label
                                                                 column) or retrieval
``.json``                                   ``annotations_json`` retrieval
``.txt``                                    ``flickr_txt``       retrieval
==========================================  ===================  ========================

``split=None`` means each layout's default: ``test`` for benchmark folders and Karpathy JSON,
the folder itself for image folders, every row for tables, ``val`` (``heldout``) for shapes.
Layout-specific settings travel in :class:`EvalOptions`; setting one that the detected
layout does not use is an error, not a silently ignored flag.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from clipforge.data.conventions import CAPTION_COLUMNS, TABLE_SUFFIXES
from clipforge.data.evalsets.base import EvalSet, ImageTransform
from clipforge.data.evalsets.benchmark_wds import benchmark_wds, is_benchmark_wds
from clipforge.data.evalsets.classification import (
    image_folder_classification,
    table_classification,
)
from clipforge.data.evalsets.retrieval import flickr_text_retrieval, json_retrieval, table_retrieval
from clipforge.data.evalsets.shapes_views import (
    ShapesClassificationSet,
    ShapesRetrievalSet,
    ShapesWordOrderSet,
)
from clipforge.data.skips import DataError
from clipforge.data.tables import check_table, table_columns
from clipforge.transforms import InferenceTransform, TrainTransform

SHAPES_NAMES: dict[str, int] = {  # registry name -> its size by default (the demo's)
    "shapes/shape": 1000,
    "shapes/colour": 1000,
    "shapes/heldout": 800,
    "shapes/retrieval": 1000,
    "shapes/word-order": 500,
}
SHAPES_IMAGE_SIZE = 64  # render size when neither the options nor the transform give one
_KNOWN_NAMES = ", ".join(SHAPES_NAMES)  # for messages


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """Settings of particular layouts (each field says which); defaults suit common data.

    ``image_root``: folder the paths of a table or annotation file are relative to (default:
    the file's folder). ``image_column`` / ``caption_column``: table columns (default: the
    one present of the usual names). ``label_column``: the table's label column.
    ``classnames``: file of class names, one per line (image folders, tables).
    ``multilabel`` / ``labels_npy``: multi-label tables (positive classes per cell, or an
    ``(N, C)`` 0/1 ``.npy``). ``size``, ``image_size``, ``seed``: shapes views (samples,
    render size, world seed); ``image_size`` defaults to the transform's. ``captions``: the
    caption kinds of ``shapes/retrieval`` (default: canonical and templated).
    """

    image_root: str | None = None
    image_column: str | None = None
    label_column: str = "label"
    caption_column: str | None = None
    classnames: str | None = None
    multilabel: bool = False
    labels_npy: str | None = None
    size: int | None = None
    image_size: int | None = None
    seed: int = 0
    captions: tuple[str, ...] | None = None

    def used_by(self, layout: str, used: tuple[str, ...]) -> dict[str, Any]:
        """The fields ``used`` (named as the opener's arguments) as keyword arguments; an error
        naming the fields set away from their defaults that ``layout`` does not use."""
        unused = [
            field.name
            for field in fields(self)
            if field.name not in used and getattr(self, field.name) != field.default
        ]
        if unused:
            raise ValueError(f"EvalOptions {unused} do not apply to a {layout} evaluation set")
        return {name: getattr(self, name) for name in used}


# layout -> its opener (each takes split, None meaning its default) and the EvalOptions it reads
_OPENERS: dict[str, tuple[Callable[..., EvalSet], tuple[str, ...]]] = {
    "benchmark_wds": (benchmark_wds, ()),
    "image_folder": (image_folder_classification, ("classnames",)),
    "flickr_txt": (flickr_text_retrieval, ("image_root",)),
    "annotations_json": (json_retrieval, ("image_root",)),
    "retrieval table": (table_retrieval, ("image_root", "image_column", "caption_column")),
    "classification table": (
        table_classification,
        ("image_root", "image_column", "label_column", "classnames", "multilabel", "labels_npy"),
    ),
}


def detect_layout(spec: str | os.PathLike[str]) -> str:
    """The layout of ``spec``: "shapes" or one in the module docstring's table; an error naming
    ``spec`` and the known names when it is neither a known name nor a path of a known kind."""
    text = os.fspath(spec)
    if text in SHAPES_NAMES:
        return "shapes"
    if text.startswith("shapes/"):
        raise ValueError(f"unknown evaluation set {text!r}; known names: {_KNOWN_NAMES}")
    path = Path(text)
    if path.is_dir():
        return "benchmark_wds" if is_benchmark_wds(path) else "image_folder"
    if not path.exists():
        raise FileNotFoundError(
            f"evaluation set {text!r} is neither an existing path nor a known name ({_KNOWN_NAMES})"
        )
    if path.suffix in TABLE_SUFFIXES:
        return "table"
    if path.suffix == ".json":
        return "annotations_json"
    if path.suffix == ".txt":
        return "flickr_txt"
    raise DataError(
        f"evaluation set {text!r}: cannot tell its layout; expected a folder, a table "
        f"({', '.join(TABLE_SUFFIXES)}), a .json or .txt annotation file, or a name ({_KNOWN_NAMES})"
    )


def _render_size(options: EvalOptions, transform: ImageTransform | None) -> int:
    if options.image_size is not None:
        return options.image_size
    if isinstance(transform, (InferenceTransform, TrainTransform)):
        return transform.config.image_size
    return SHAPES_IMAGE_SIZE


def _open_shapes(
    name: str, split: str | None, transform: ImageTransform | None, options: EvalOptions
) -> EvalSet:
    retrieval = name == "shapes/retrieval"
    options.used_by(name, ("size", "image_size", "seed") + (("captions",) if retrieval else ()))
    common = {
        "size": SHAPES_NAMES[name] if options.size is None else options.size,
        "image_size": _render_size(options, transform),
        "seed": options.seed,
        "transform": transform,
    }
    if retrieval:
        return ShapesRetrievalSet(split=split, captions=options.captions, **common)
    if name == "shapes/word-order":
        if split is not None:
            raise ValueError(f"{name} has no splits (its scenes are drawn apart); got {split!r}")
        return ShapesWordOrderSet(**common)
    task = {"shapes/shape": "shape", "shapes/colour": "colour"}.get(name, "heldout_pair")
    return ShapesClassificationSet(task, split=split, **common)


def _table_task(path: Path, options: EvalOptions) -> str:
    """Classification when the table has the label column (or a label array is given),
    retrieval when it has a caption column instead."""
    if options.labels_npy is not None or options.multilabel:
        return "classification"
    header = list(table_columns(check_table(path)))
    if options.label_column in header:
        return "classification"
    if options.caption_column is not None or any(name in header for name in CAPTION_COLUMNS):
        return "retrieval"
    raise DataError(
        f"table {str(path)!r} has neither a {options.label_column!r} label column nor a caption "
        f"column among {list(CAPTION_COLUMNS)} (columns: {header})"
    )


def open_evalset(
    spec: str | os.PathLike[str],
    split: str | None = None,
    transform: ImageTransform | None = None,
    options: EvalOptions | None = None,
) -> EvalSet:
    """The evaluation set ``spec`` names (see the module docstring); its ``task`` says what
    it is. ``transform`` maps each PIL image to pixels (e.g. the model's inference
    transform)."""
    options = EvalOptions() if options is None else options
    layout = detect_layout(spec)
    if layout == "shapes":
        return _open_shapes(os.fspath(spec), split, transform, options)
    if layout == "table":
        layout = f"{_table_task(Path(spec), options)} table"
    opener, used = _OPENERS[layout]
    return opener(Path(spec), split=split, transform=transform, **options.used_by(layout, used))
