"""Image-text pairs listed in a table (CSV, TSV or parquet) with images in a folder.

The table is read once into memory (paths and captions only: a few hundred bytes a row), which
makes it a map-style dataset: row ``i`` is :class:`~clipforge.data.sources.RawSample` ``i``,
and an epoch is a permutation of the rows split across ranks and workers, so resuming skips
rows by index without opening a single image.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from clipforge.data.skips import DataError
from clipforge.data.sources import RawSample, epoch_order

TABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet")


def read_columns(path: Path, columns: Sequence[str]) -> dict[str, list[object]]:
    """The named columns of a table, as lists; DataError naming any column that is missing."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # optional dependency, needed only for parquet tables

        available = list(pq.read_schema(path).names)
        _check_columns(path, columns, available)
        return pq.read_table(path, columns=list(columns)).to_pydict()
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
        _check_columns(path, columns, list(reader.fieldnames or []))
        rows = list(reader)
    return {column: [row[column] for row in rows] for column in columns}


def _check_columns(path: Path, columns: Sequence[str], available: Sequence[str]) -> None:
    missing = [column for column in columns if column not in available]
    if missing:
        raise DataError(f"table {str(path)!r}: no column {missing} (columns: {list(available)})")


def _cell(value: object) -> str:
    return "" if value is None else str(value).strip()


class ImageTextTable(Dataset[RawSample]):
    """A table of image paths and captions as a map-style dataset of raw samples.

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
        self.path = Path(path)
        if self.path.suffix not in TABLE_SUFFIXES:
            raise DataError(f"table {str(self.path)!r}: suffix must be one of {TABLE_SUFFIXES}")
        if not self.path.is_file():
            raise DataError(f"table {str(self.path)!r} not found")
        self.image_root = self.path.parent if image_root is None else Path(image_root)
        if not self.image_root.is_dir():
            raise DataError(
                f"image root {str(self.image_root)!r} of table {str(self.path)!r} is not a folder"
            )
        columns = read_columns(self.path, [image_column, *caption_columns])
        self._paths = [_cell(value) for value in columns[image_column]]
        self._captions = [
            tuple(text for text in (_cell(columns[c][row]) for c in caption_columns) if text)
            for row in range(len(self._paths))
        ]
        if not self._paths:
            raise DataError(f"table {str(self.path)!r} has no rows")
        self.name = str(self.path)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> RawSample:
        """Row ``index`` as a raw sample keyed ``{index}:{image path cell}`` (the index keeps
        the keys of rows sharing an image distinct)."""
        relative = self._paths[index]
        return RawSample(
            key=f"{index}:{relative}",
            origin=self.name,
            image=self.image_root / relative if relative else None,
            captions=self._captions[index],
        )

    def samples(
        self, *, epoch: int, seed: int, stream: int, streams: int, shuffle: bool, start: int
    ) -> Iterator[RawSample]:
        """Rows ``order[stream::streams][start:]`` of this epoch's row order (see
        :meth:`clipforge.data.sources.SampleSource.samples`)."""
        order = epoch_order(len(self), seed=seed, epoch=epoch, shuffle=shuffle, salt="rows")
        return (self[index] for index in order[stream::streams][start:])
