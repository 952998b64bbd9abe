"""Tables (CSV, TSV or parquet) of image paths and captions or labels: the one table reader.

Training reads a table as :class:`ImageTextTable`; evaluation and embedding open it with
:func:`open_table` (which picks its image and caption columns), then read split rows or every
column; all go through :func:`read_table_rows`, so a table reads (and fails) the same way
everywhere.
Training's table is read once into memory (paths and captions only: a few hundred bytes a row);
an epoch is a permutation of the rows split across ranks and workers.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clipforge.atomic import atomic_path
from clipforge.data.conventions import (
    CAPTION_COLUMNS,
    IMAGE_COLUMNS,
    SPLIT_COLUMN,
    TABLE_SUFFIXES,
)
from clipforge.data.skips import DataError, MissingDataError
from clipforge.data.stream import RawSample, epoch_order

_CANDIDATES = {"image": IMAGE_COLUMNS, "caption": CAPTION_COLUMNS}  # usual column names


def check_table(path: str | Path) -> Path:
    """``path`` as a Path if it names an existing table file, else an error naming it."""
    table = Path(path)
    if table.suffix.lower() not in TABLE_SUFFIXES:
        raise DataError(f"table {str(table)!r}: suffix must be one of {TABLE_SUFFIXES}")
    if not table.is_file():
        raise MissingDataError(f"table {str(table)!r} not found")
    return table


def resolve_image_root(source: Path, given: str | os.PathLike[str] | None) -> Path:
    """The folder the image paths of ``source`` (a table or annotation file) are relative to:
    ``given``, else the file's own folder; :class:`MissingDataError` when it is not a folder."""
    root = source.parent if given is None else Path(given)
    if not root.is_dir():
        raise MissingDataError(f"image root {str(root)!r} of {str(source)!r} is not a folder")
    return root


def _delimiter(path: Path) -> str:
    """Tab for ``.tsv``, and for a ``.csv`` whose header is tab-separated: OpenCLIP's trainer
    writes and reads tab-separated ``.csv`` files by default (its ``--csv-separator``)."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = handle.readline()
    except UnicodeDecodeError:
        return ","  # the reader reports the encoding error, naming the table
    return "\t" if "\t" in header and "," not in header else ","


def table_columns(path: Path) -> dict[str, bool]:
    """Column name -> whether it holds text, in table order. CSV cells are all text; a
    parquet column holds text when its type is a string or a list of strings (several
    captions of one image)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa  # optional dependency, needed only for parquet tables
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"table {str(path)!r}: cannot read parquet ({err})") from err
        return {field.name: _is_text(pa, field.type) for field in schema}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle, delimiter=_delimiter(path)), [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"table {str(path)!r}: cannot read ({err})") from err
    return dict.fromkeys(header, True)


def _is_text(pa, kind) -> bool:  # noqa: ANN001 (pyarrow is imported lazily)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def open_table(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None,
    *,
    required: bool = True,
    **given: str | None,
) -> tuple[Path, Path, list[str], list[str | None]]:
    """The checked table, the folder its image paths are relative to (:func:`resolve_image_root`),
    its column names, and the column picked for each of ``given`` (``image=``, ``caption=``).

    A column given by name must exist and hold text; for None, the one text column among the
    usual names (:data:`IMAGE_COLUMNS`, :data:`CAPTION_COLUMNS`) is picked. None or several is
    an error naming the table, except that None is picked when the column is not ``required``.
    """
    table = check_table(path)
    root = resolve_image_root(table, image_root)
    columns = table_columns(table)
    picked = [_pick_column(table, columns, name, what, required) for what, name in given.items()]
    return table, root, list(columns), picked


def _pick_column(
    path: Path, columns: dict[str, bool], given: str | None, what: str, required: bool
) -> str | None:
    if given is not None:
        if given not in columns:
            raise DataError(
                f"table {str(path)!r}: no {what} column {given!r} (columns: {list(columns)})"
            )
        if not columns[given]:
            raise DataError(f"table {str(path)!r}: {what} column {given!r} does not hold text")
        return given
    candidates = _CANDIDATES[what]
    found = [name for name in candidates if columns.get(name)]
    if len(found) == 1 or (not found and not required):
        return found[0] if found else None
    problem = "no" if not found else f"several ({found})"
    raise DataError(
        f"table {str(path)!r}: {problem} {what} column among {list(candidates)} "
        f"(columns: {list(columns)}); name the {what} column explicitly"
    )


def cell_text(value: object) -> str:
    """A cell as stripped text; an empty or null cell is ``""``."""
    return "" if value is None else str(value).strip()


@dataclass(frozen=True)
class TableRows:
    """The requested columns of the selected rows of table ``path``; ``rows[i]`` is the row's
    0-based position in the table (data rows, header excluded), for error messages and keys."""

    path: Path
    columns: dict[str, list[object]]
    rows: list[int]
    total: int  # rows in the whole table

    def paths(self, column: str) -> list[str]:
        """The image path cells of ``column``, stripped; an empty one is an error naming its
        row."""
        cells = [cell_text(value) for value in self.columns[column]]
        if "" in cells:
            row = self.rows[cells.index("")] + 1
            raise DataError(f"table {str(self.path)!r}: row {row} has an empty {column!r} cell")
        return cells


def read_table_rows(path: Path, columns: Sequence[str], split: str | None) -> TableRows:
    """``columns`` of every row, or of the rows whose ``split`` column equals ``split``; an
    error names any column that is missing.

    A table without a ``split`` column holds one split, so asking it for a split is an error
    rather than a silent "all rows"; so is a split that selects no row.
    """
    available = list(table_columns(path))
    if split is not None and SPLIT_COLUMN not in available:
        raise DataError(
            f"table {str(path)!r} has no {SPLIT_COLUMN!r} column to select split {split!r} "
            "from; pass split=None to read all its rows"
        )
    wanted = list(dict.fromkeys([*columns, *([SPLIT_COLUMN] if split is not None else [])]))
    missing = [column for column in wanted if column not in available]
    if missing:
        raise DataError(f"table {str(path)!r}: no column {missing} (columns: {available})")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        cells = pq.read_table(path, columns=wanted).to_pydict()
    else:
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                table = list(csv.DictReader(handle, delimiter=_delimiter(path)))
        except (UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"table {str(path)!r}: cannot read ({err})") from err
        cells = {column: [row[column] for row in table] for column in wanted}
    count = len(cells[wanted[0]])
    rows = list(range(count))
    if split is not None:
        values = [cell_text(value) for value in cells[SPLIT_COLUMN]]
        rows = [row for row in rows if values[row] == split]
        if not rows and count:
            raise DataError(
                f"table {str(path)!r}: no row of split {split!r} (splits: {sorted(set(values))})"
            )
    if not rows:
        raise DataError(f"table {str(path)!r} has no rows")
    selected = {name: [cells[name][row] for row in rows] for name in columns}
    return TableRows(path, selected, rows, count)


def write_table(path: Path, rows: list[dict[str, Any]], types: dict[str, str]) -> None:
    """``rows`` as a parquet table, written atomically; ``types`` maps each column, in order, to
    a pyarrow type name (``"string"``, ``"int32"``, ``"bool"``, ...)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in types.items()])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)


class ImageTextTable:
    """A table of image paths and captions as a source of raw samples.

    ``image_column`` holds paths relative to ``image_root`` (default: the table's folder;
    absolute paths are used as they are); each of ``caption_columns`` holds one candidate
    caption per row, empty cells being ignored. Images are not opened here: a missing or
    broken file is found, counted and skipped when the stream decodes the row.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        image_root: str | Path | None = None,
        image_column: str = "filepath",
        caption_columns: Sequence[str] = ("caption",),
    ) -> None:
        self.path = check_table(path)
        self.image_root = resolve_image_root(self.path, image_root)
        columns = read_table_rows(self.path, [image_column, *caption_columns], None).columns
        self._paths = [cell_text(value) for value in columns[image_column]]
        self._captions = [
            tuple(text for text in (cell_text(columns[c][row]) for c in caption_columns) if text)
            for row in range(len(self._paths))
        ]
        self.name = str(self.path)

    def samples(
        self, *, epoch: int, seed: int, stream: int, streams: int, shuffle: bool
    ) -> Iterator[RawSample]:
        """Rows ``order[stream::streams]`` of this epoch's row order (see
        :meth:`clipforge.data.stream.SampleSource.samples`), keyed ``{row}:{image path cell}``
        (the row number keeps the keys of rows sharing an image distinct)."""
        order = epoch_order(len(self._paths), seed=seed, epoch=epoch, shuffle=shuffle, salt="rows")
        for row in order[stream::streams]:
            relative = self._paths[row]
            image = self.image_root / relative if relative else None
            yield RawSample(f"{row}:{relative}", self.name, image, self._captions[row])
