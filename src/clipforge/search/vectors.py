"""One modality's vectors, read one partition (or chunk) at a time, addressed by global id.

Index building, dedup and the server must not hold a whole collection in memory, so they see it
through a memory-mapped :class:`VectorSource` (of a collection directory, or of an in-memory
array, so the same code serves ``build_index`` and ad-hoc dedup).

Global ids follow the layout: ``id = offset(partition) + row`` over the partitions in order.
Text partitions hold a row of zeros where a sample has no caption; those rows are not vectors (a
zero vector scores 0 against everything, which would rank above every real match with a
negative score), so a text source skips them while keeping every other row's global id. Every
vector that is read is checked: finite, and L2 norm within ``NORM_TOLERANCE`` of 1, because
inner-product search and the cosine thresholds of dedup are only right for unit vectors.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipforge.search import layout
from clipforge.search.configs import MODALITIES

NORM_TOLERANCE = 1e-2  # float16 storage moves a unit norm by ~1e-3; 1e-2 still catches raw features
CHUNK_ROWS = 65536  # rows converted to float32 at a time: 128 MiB at D = 512


class ItemNotFound(LookupError):
    """An id outside the collection, or an item whose image cannot be served; maps to 404."""


@dataclass(frozen=True)
class VectorBlock:
    """One array of vectors (a stored partition's file, or an in-memory array): ``rows`` rows
    whose global ids start at ``offset``."""

    number: int
    where: str  # the file path, or a name for an in-memory array (used in error messages)
    rows: int
    offset: int


class VectorSource:
    """Read-only access to the vectors of a collection's modality, or of one array.

    Build one with :meth:`from_collection` or :meth:`from_array`; ids range over
    ``[0, total_rows)``. With ``skip_zero`` (text) an all-zero row holds no vector; finding
    them reads every row, so it waits for ``ntotal`` or ``sample_ids`` (an index build), and a
    server opens a collection of millions of rows without reading it.
    """

    def __init__(
        self,
        partitions: list[VectorBlock],
        dim: int,
        load: Callable[[VectorBlock], np.ndarray],
        *,
        skip_zero: bool = False,
    ) -> None:
        self.partitions = partitions
        self.dim = dim
        self.skip_zero = skip_zero
        self._load = load
        self._offsets = np.array([p.offset for p in partitions], dtype=np.int64)
        self.total_rows = sum(p.rows for p in partitions)

    @functools.cached_property
    def _valid(self) -> tuple[list[np.ndarray | None], np.ndarray]:
        """Per partition, the bool mask (rows,) of the rows that hold a vector (None: all do),
        and (P + 1,) the number of such rows before each partition."""
        masks = [_nonzero_rows(self._load(p)) if self.skip_zero else None for p in self.partitions]
        counts = [
            p.rows if m is None else int(m.sum())
            for p, m in zip(self.partitions, masks, strict=True)
        ]
        if sum(counts) == 0:
            raise ValueError(f"{Path(self.partitions[0].where).parent}: no vectors, only zero rows")
        return masks, np.cumsum([0, *counts])

    @property
    def ntotal(self) -> int:
        """Rows that hold a vector; counting them reads a text source whole."""
        return int(self._valid[1][-1])

    @classmethod
    def from_array(cls, x: np.ndarray, *, name: str = "embeddings") -> VectorSource:
        """A source over an in-memory (n, D) array; ids are its row numbers."""
        if not isinstance(x, np.ndarray) or x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            shape = getattr(x, "shape", type(x).__name__)
            raise ValueError(f"{name}: expected a 2-D float array (n, D), got {shape}")
        if len(x) == 0:
            raise ValueError(f"{name}: no rows")
        return cls([VectorBlock(0, name, len(x), 0)], x.shape[1], lambda _: x)

    @classmethod
    def from_collection(
        cls, root: str | os.PathLike, modality: str = "image", partitions: list[int] | None = None
    ) -> VectorSource:
        """The memory-mapped ``modality`` vectors of collection ``root``: of every complete
        partition, or of ``partitions`` (those an index was built over, which pin its ids)."""
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        declared = layout.read_info(root).get("dim")
        complete = layout.complete_partitions(root)
        numbers = complete if partitions is None else list(partitions)
        missing = sorted(set(numbers) - set(complete))
        if missing:
            raise ValueError(
                f"{root}: partitions {missing} are not complete, but the index was built "
                f"over partitions {numbers}; serve the embeddings it was built from"
            )
        if not numbers:
            raise ValueError(
                f"{root}: no complete partitions (no {layout.STATS_DIR}/stats_*.json); "
                "run `clipforge embed` first"
            )
        arrays = {n: _open(layout.emb_path(root, n, modality)) for n in numbers}
        widths = {n: arr.shape[1] for n, arr in arrays.items()}
        if len(set(widths.values())) > 1:
            raise ValueError(f"{root}: the {modality} partitions have different widths {widths}")
        dim = widths[numbers[0]]
        if declared is not None and declared != dim:
            raise ValueError(
                f"{root}: {layout.INFO_FILE} says dim={declared}, the arrays have {dim}"
            )
        blocks, offset = [], 0
        for n, arr in arrays.items():
            blocks.append(VectorBlock(n, str(layout.emb_path(root, n, modality)), len(arr), offset))
            offset += len(arr)
        return cls(blocks, int(dim), lambda p: arrays[p.number], skip_zero=modality == "text")

    def chunks(
        self, max_rows: int = CHUNK_ROWS, *, partition: VectorBlock | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids (m,) int64, x (m, D) float32)`` over the rows that hold a vector.

        Partitions come in order (only ``partition`` when given) and a chunk never spans two,
        so at most ``max_rows`` rows are in memory at once.
        """
        for p in self.partitions if partition is None else [partition]:
            arr = self._load(p)
            for start in range(0, p.rows, max_rows):
                x = np.asarray(arr[start : start + max_rows], dtype=np.float32)
                rows = np.arange(start, start + len(x))
                if self.skip_zero:
                    keep = x.any(axis=1)
                    rows, x = rows[keep], x[keep]
                if len(rows):
                    yield p.offset + rows, self._checked(x, p, rows)

    def sample_ids(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``min(size, ntotal)`` distinct valid ids drawn uniformly by ``rng``, ascending."""
        masks, starts = self._valid
        picks = np.sort(rng.choice(self.ntotal, size=min(size, self.ntotal), replace=False))
        owner = np.searchsorted(starts, picks, side="right") - 1  # partition index
        ids = np.empty(len(picks), dtype=np.int64)
        for i in np.unique(owner):
            p, sel, valid = self.partitions[i], owner == i, masks[i]
            rows = picks[sel] - starts[i]
            ids[sel] = p.offset + (rows if valid is None else np.flatnonzero(valid)[rows])
        return ids

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(position in partitions, row)``, (n,) int64 each, of global ``ids`` (n,).

        Raises :class:`ItemNotFound` naming the first id outside ``[0, total_rows)``.
        """
        ids = np.asarray(ids, dtype=np.int64)
        outside = ids[(ids < 0) | (ids >= self.total_rows)]
        if len(outside):
            raise ItemNotFound(
                f"id {outside[0]} is not in the collection (ids are 0..{self.total_rows - 1})"
            )
        owner = np.searchsorted(self._offsets, ids, side="right") - 1
        return owner, ids - self._offsets[owner]

    def take(self, ids: np.ndarray) -> np.ndarray:
        """Rows (len(ids), D) float32 of the given global ids, in the order given; a skipped
        (all-zero) row comes back as zeros."""
        owner, rows = self.locate(ids)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for i in np.unique(owner):
            p, at = self.partitions[i], np.flatnonzero(owner == i)
            at = at[np.argsort(rows[at], kind="stable")]  # sorted reads from the memory map
            out[at] = self._checked(np.asarray(self._load(p)[rows[at]], np.float32), p, rows[at])
        return out

    def _checked(self, x: np.ndarray, p: VectorBlock, rows: np.ndarray) -> np.ndarray:
        """``x`` (m, D) itself, once its rows (numbered ``rows`` in ``p``) are checked to be unit
        (or, when this source skips them, zero)."""
        norms = np.linalg.norm(x, axis=1)
        ok = np.abs(norms - 1.0) <= NORM_TOLERANCE  # NaN norms fail too
        if self.skip_zero:
            ok |= norms == 0
        bad = np.flatnonzero(~ok)
        if len(bad):
            raise ValueError(
                f"{p.where}: row {rows[bad[0]]} has L2 norm {norms[bad[0]]:.4g}; embeddings must "
                "be finite and L2-normalised for inner-product search"
            )
        return x


def _open(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing, although its partition is marked complete")
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError as err:
        raise ValueError(f"{path}: not a readable .npy array ({err})") from err
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{path}: expected a float array (n, D), got {arr.dtype} {arr.shape}")
    return arr


def _nonzero_rows(arr: np.ndarray) -> np.ndarray:
    """Bool mask (n,) of rows that are not all zero, computed a chunk at a time."""
    parts = [np.any(arr[s : s + CHUNK_ROWS] != 0, axis=1) for s in range(0, len(arr), CHUNK_ROWS)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
