"""Classification sets from an image folder or a table, single- or multi-label.

* Image folders: one sub-folder per class (searched recursively), class order = sorted folder
  names, as torchvision's ``ImageFolder`` and every CLIP benchmark number that used it.
* Tables (CSV/TSV/parquet): an image path column and a label column holding class indices or
  class names; or, multi-label, a column of positive classes per row, or an ``(N, C)`` 0/1
  ``.npy`` array aligned with the rows.

Display names come from a ``classnames.txt`` (one per line, in class-index order), which is
what turns ``n01440764`` into "tench" for zero-shot prompts.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clipforge.data.conventions import IMAGE_SUFFIXES, is_hidden, is_image_name, visible_files
from clipforge.data.evalsets.base import ClassificationSet, ImageTransform, read_lines
from clipforge.data.skips import DataError
from clipforge.data.tables import TableRows, cell_text, open_table, read_table_rows

CLASSNAMES_FILE = "classnames.txt"
_INTEGER = re.compile(r"[+-]?\d+")
LABEL_SEPARATOR = "|"  # between the classes of a multi-label CSV cell

Classnames = Sequence[str] | str | os.PathLike[str] | None  # names, or a file of names


def normalize_templates(lines: Sequence[str], source: str) -> list[str]:
    """Zero-shot templates with ``{}`` for the class name (CLIP_benchmark files write
    ``{c}``); an error naming ``source`` for a template without exactly one placeholder."""
    templates = []
    for number, line in enumerate(lines, 1):
        template = line.replace("{c}", "{}")
        try:
            ok = template.count("{}") == 1 and template.format("x") is not None
        except (IndexError, KeyError, ValueError):
            ok = False
        if not ok:
            raise DataError(
                f"templates {source}: entry {number} {line!r} needs exactly one '{{c}}' or "
                "'{}' for the class name (and no other braces)"
            )
        templates.append(template)
    return templates


def resolve_classnames(classnames: Classnames, *fallbacks: Path) -> list[str] | None:
    """Class names given as a list, or read from a file; else from the first of ``fallbacks``
    (``classnames.txt`` beside the data) that exists; ``None`` when there is none."""
    if isinstance(classnames, (str, os.PathLike)):
        return read_lines(Path(classnames), "class names")
    if classnames is not None:
        names = [str(name).strip() for name in classnames]
        if not names or not all(names):
            raise DataError(f"class names {list(classnames)!r}: every name must be non-empty")
        return names
    for path in fallbacks:
        if path.is_file():
            return read_lines(path, "class names")
    return None


def _check_unique(names: Sequence[str], source: str) -> None:
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DataError(f"class names of {source}: duplicated {duplicates}")


def image_folder_classification(
    root: str | os.PathLike[str],
    *,
    split: str | None = None,
    classnames: Classnames = None,
    transform: ImageTransform | None = None,
) -> ClassificationSet:
    """A folder of class folders (``root/<class>/**/<image>``, or ``root/<split>/<class>/...``
    with ``split``) as a classification set keyed by ``<class>/<relative path>``.

    Class ``i`` is the ``i``-th folder in sorted order. Display names: ``classnames`` (a list
    or a file), else ``classnames.txt`` in the split folder or in ``root``, else the folder
    names. A class folder without images is an error: its class could never be scored.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"image folder {str(base)!r} not found")
    folder = base if split is None else base / split
    if not folder.is_dir():
        present = sorted(entry.name for entry in base.iterdir() if entry.is_dir())
        raise FileNotFoundError(
            f"image folder {str(base)!r} has no split folder {split!r} (folders: {present})"
        )
    class_dirs = sorted(
        entry for entry in folder.iterdir() if entry.is_dir() and not is_hidden(entry.name)
    )
    if not class_dirs:
        raise DataError(f"image folder {str(folder)!r} has no class folders")
    keys, images, labels = [], [], []
    for label, class_dir in enumerate(class_dirs):
        files = [class_dir / name for name in visible_files(class_dir) if is_image_name(name)]
        if not files:
            raise DataError(
                f"class folder {str(class_dir)!r} holds no image ({', '.join(IMAGE_SUFFIXES)})"
            )
        keys += [path.relative_to(folder).as_posix() for path in files]
        images += files
        labels += [label] * len(files)
    names = resolve_classnames(classnames, folder / CLASSNAMES_FILE, base / CLASSNAMES_FILE)
    if names is None:
        names = [entry.name for entry in class_dirs]
    elif len(names) != len(class_dirs):
        raise DataError(
            f"image folder {str(folder)!r}: {len(class_dirs)} class folders but {len(names)} "
            "class names; give one name per folder, in sorted folder order"
        )
    _check_unique(names, str(folder))
    return ClassificationSet(
        name=str(folder),
        keys=keys,
        images=images,
        labels=np.asarray(labels, dtype=np.int64),
        classnames=names,
        transform=transform,
    )


def _label_tokens(cell: object, *, multi: bool) -> list[str]:
    """A label cell as strings: one for single-label; for multi-label, the entries of a list
    cell (parquet) or of a ``LABEL_SEPARATOR``-joined string (CSV), empty meaning "no class"."""
    if isinstance(cell, (list, tuple)):
        if not multi:
            raise ValueError(f"a list {cell!r} where one label was expected")
        return [str(item).strip() for item in cell]
    text = cell_text(cell)
    if not multi:
        return [text]
    return [part.strip() for part in text.split(LABEL_SEPARATOR)] if text else []


def _npy_labels(path: Path, rows: Sequence[int], total_rows: int, source: str) -> np.ndarray:
    """Rows ``rows`` of an ``(N, C)`` 0/1 array saved with ``np.save``, checked."""
    if not path.is_file():
        raise FileNotFoundError(f"label array {str(path)!r} of {source} not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"label array {str(path)!r}: cannot read ({err})") from err
    if array.ndim != 2 or array.shape[0] != total_rows:
        raise DataError(
            f"label array {str(path)!r} has shape {array.shape}; {source} has {total_rows} "
            "rows, so it needs (rows, C)"
        )
    bad = np.argwhere((array != 0) & (array != 1))
    if len(bad):
        raise DataError(
            f"label array {str(path)!r}: row {bad[0][0] + 1} holds "
            f"{array[tuple(bad[0])].item()!r}; labels must be 0/1"
        )
    return array[list(rows)].astype(np.uint8)


def table_classification(
    path: str | os.PathLike[str],
    *,
    split: str | None = None,
    image_root: str | os.PathLike[str] | None = None,
    image_column: str | None = None,
    label_column: str = "label",
    classnames: Classnames = None,
    multilabel: bool = False,
    labels_npy: str | os.PathLike[str] | None = None,
    transform: ImageTransform | None = None,
) -> ClassificationSet:
    """A table of image paths and labels as a classification set keyed ``<row>:<path>``.

    Paths are relative to ``image_root`` (default: the table's folder). The image column is
    ``image_column`` or the one of ``filepath, path, image, image_path, filename, file`` present.
    Single-label: ``label_column`` holds class indices (every cell an integer) or class names.
    Multi-label (``multilabel=True``): ``label_column`` holds each row's positive classes, a
    list (parquet) or a ``|``-joined string; or ``labels_npy`` names an
    ``(rows, C)`` 0/1 ``.npy`` aligned with the table's rows. Class names: ``classnames``, else
    ``classnames.txt`` beside the table, else (name labels only) the sorted distinct labels.
    With ``split``, only rows whose ``split`` column equals it are read. Rows are numbered from
    1, header excluded, in errors.
    """
    table_path, root, _, (image_column,) = open_table(path, image_root, image=image_column)
    source = f"table {str(table_path)!r}"
    multilabel = multilabel or labels_npy is not None
    columns = [image_column] if labels_npy is not None else [image_column, label_column]
    table = read_table_rows(table_path, columns, split)
    paths = table.paths(image_column)
    names = resolve_classnames(classnames, table_path.parent / CLASSNAMES_FILE)
    if labels_npy is not None:
        labels = _npy_labels(Path(labels_npy), table.rows, table.total, source)
        if names is None or len(names) != labels.shape[1]:
            found = "no class names" if names is None else f"{len(names)} class names"
            raise DataError(
                f"{source}: label array {str(labels_npy)!r} has {labels.shape[1]} classes but "
                f"{found} were given"
            )
    else:
        labels, names = _table_labels(table, label_column, names, multilabel, paths, source)
    _check_unique(names, source)
    return ClassificationSet(
        name=str(table_path),
        keys=[f"{row + 1}:{cell}" for row, cell in zip(table.rows, paths, strict=True)],
        images=[root / cell for cell in paths],
        labels=labels,
        classnames=names,
        transform=transform,
    )


def _table_labels(
    table: TableRows,
    column: str,
    names: list[str] | None,
    multilabel: bool,
    paths: Sequence[str],
    source: str,
) -> tuple[np.ndarray, list[str]]:
    """Class indices ``(N,)`` or multi-hot ``(N, C)`` from the label cells, and the names.

    The labels are decided once for the whole table: class indices when every one is an
    integer (``names`` must then be known), else class names, looked up in ``names`` or,
    without them, defining them as their sorted distinct values. Integer labels that would all
    also be names with *other* indices make the table ambiguous: rejected rather than guessed.
    """
    places = [f"row {row + 1} ({path!r})" for row, path in zip(table.rows, paths, strict=True)]
    per_row: list[list[str]] = []
    for place, cell in zip(places, table.columns[column], strict=True):
        try:
            tokens = _label_tokens(cell, multi=multilabel)
        except ValueError as err:
            raise DataError(f"{source}: {place}: {err}") from err
        if not multilabel and not tokens[0]:
            raise DataError(f"{source}: {place} has an empty {column!r} cell")
        per_row.append(tokens)
    tokens = [token for row in per_row for token in row]
    as_index = bool(tokens) and all(_INTEGER.fullmatch(token) for token in tokens)
    if as_index:
        if names is None:
            raise DataError(
                f"{source}: integer labels need class names: pass classnames or put "
                f"{CLASSNAMES_FILE} beside the data"
            )
        named = {name: index for index, name in enumerate(names)}
        if all(token in named for token in tokens) and any(
            named[token] != int(token) for token in tokens
        ):
            raise DataError(
                f"{source}: the integer labels are also class names with other indices; "
                "rename the classes or write labels as names"
            )
        per_row = [[str(int(token)) for token in row] for row in per_row]
    elif names is None:
        names = sorted(set(tokens))
    if not names:
        raise DataError(f"{source}: no label in any row, so no class to score")
    lookup = {str(index) if as_index else name: index for index, name in enumerate(names)}
    shown = names[:10] + (["..."] if len(names) > 10 else [])
    for place, row in zip(places, per_row, strict=True):
        missing = [token for token in row if token not in lookup]
        if missing:
            problem = (
                f"class index {missing[0]} is outside [0, {len(names)})"
                if as_index
                else f"unknown class {missing[0]!r} (classes: {shown})"
            )
            raise DataError(f"{source}: {place}: {problem}")
    indices = [[lookup[token] for token in row] for row in per_row]
    if not multilabel:
        return np.asarray([row[0] for row in indices], dtype=np.int64), names
    multi_hot = np.zeros((len(indices), len(names)), dtype=np.uint8)
    for position, row in enumerate(indices):
        multi_hot[position, row] = 1
    return multi_hot, names
