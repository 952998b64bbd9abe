"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Everything clipforge writes that another process may read while it is written (checkpoints,
shards, embedding partitions, indices, results) goes through here: the data goes to a hidden
temporary name in the same directory, is flushed to disk, then renamed over the final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    """The mode ``open()`` gives a new file under this process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed to ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was.
    ``fsync=False`` skips the flush for many small files whose loss on power failure is
    acceptable (the rename still keeps a crashed process from leaving half a file).
    """
    final = Path(path)
    tmp = final.with_name(f".{final.name}.partial")
    try:
        yield tmp
        # Some writers (safetensors) create owner-only files; a saved file gets the mode any
        # file the user creates gets.
        os.chmod(tmp, _FILE_MODE)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        try:
            os.replace(tmp, final)
        except OSError as err:  # name the user's path, not the temporary one
            raise type(err)(err.errno, err.strerror, str(final)) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (keys in insertion order) atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
