"""Reading the columns an evaluation table needs, with the column names found or checked.

The cells themselves are read by :mod:`clipforge.data.tables`; this module adds what evaluation
tables need on top: finding the image column among the usual names, and selecting the rows of
one split when the table has a ``split`` column.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clipforge.data.skips import DataError
from clipforge.data.tables import TABLE_SUFFIXES, read_columns

IMAGE_COLUMNS: tuple[str, ...] = ("filepath", "path", "image", "image_path", "filename", "file")
CAPTION_COLUMNS: tuple[str, ...] = ("caption", "captions", "text", "title")
SPLIT_COLUMN = "split"


def check_table(path: str | Path) -> Path:
    """``path`` as a Path if it names an existing table file, else an error naming it."""
    table = Path(path)
    if table.suffix not in TABLE_SUFFIXES:
        raise DataError(f"table {str(table)!r}: suffix must be one of {TABLE_SUFFIXES}")
    if not table.is_file():
        raise FileNotFoundError(f"table {str(table)!r} not found")
    return table


def table_header(path: Path) -> list[str]:
    """The column names of a CSV/TSV (first row) or parquet (schema) table."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # optional dependency, needed only for parquet tables

        return list(pq.read_schema(path).names)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
        return next(reader, [])


def pick_column(
    path: Path, header: Sequence[str], given: str | None, candidates: Sequence[str], what: str
) -> str:
    """``given`` when set (checked later, when read), else the one column of ``candidates``
    present in ``header``; an error naming the table when none or several are."""
    if given is not None:
        return given
    found = [name for name in candidates if name in header]
    if len(found) != 1:
        problem = "no" if not found else f"several ({found})"
        raise DataError(
            f"table {str(path)!r}: {problem} {what} column among {list(candidates)} "
            f"(columns: {list(header)}); name the {what} column explicitly"
        )
    return found[0]


@dataclass(frozen=True)
class TableRows:
    """The requested columns of the selected rows; ``rows[i]`` is the row's 0-based position
    in the table (data rows, header excluded), for error messages and keys."""

    columns: dict[str, list[object]]
    rows: list[int]
    total: int  # rows in the whole table


def read_table_rows(path: Path, columns: Sequence[str], split: str | None) -> TableRows:
    """``columns`` of every row, or of the rows whose ``split`` column equals ``split``.

    A table without a ``split`` column holds one split, so asking it for a split is an error
    rather than a silent "all rows"; so is a split that selects no row.
    """
    header = table_header(path)
    if split is not None and SPLIT_COLUMN not in header:
        raise DataError(
            f"table {str(path)!r} has no {SPLIT_COLUMN!r} column to select split {split!r} "
            "from; pass split=None to read all its rows"
        )
    wanted = list(dict.fromkeys([*columns, *([SPLIT_COLUMN] if split is not None else [])]))
    cells = read_columns(path, wanted)
    count = len(cells[wanted[0]])
    if split is None:
        rows = list(range(count))
    else:
        values = [str(value).strip() for value in cells[SPLIT_COLUMN]]
        rows = [row for row in range(count) if values[row] == split]
        if not rows:
            raise DataError(
                f"table {str(path)!r}: no row of split {split!r} (splits: {sorted(set(values))})"
            )
    if not rows:
        raise DataError(f"table {str(path)!r} has no rows")
    return TableRows({name: [cells[name][row] for row in rows] for name in columns}, rows, count)


def path_cells(path: Path, column: str, table: TableRows) -> list[str]:
    """The image path cells, stripped; an empty cell is an error naming its row."""
    cells = ["" if value is None else str(value).strip() for value in table.columns[column]]
    for position, cell in enumerate(cells):
        if not cell:
            raise DataError(
                f"table {str(path)!r}: row {table.rows[position] + 1} has an empty {column!r} cell"
            )
    return cells
