"""Opening images from files or bytes, with one error type for everything that cannot decode.

Datasets scraped from the web are full of empty, truncated and mislabelled files. Pillow reports
them with half a dozen exception types, some of them only when the pixels are read (a truncated
JPEG opens fine and fails in ``load()``), so a loader must force the decode and translate every
failure into one catchable error that says which file or key was bad and why.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image


class ImageDecodeError(ValueError):
    """An image file or byte string that is missing, empty or cannot be decoded."""


def load_image(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
    *,
    name: str | None = None,
) -> Image.Image:
    """Open and fully decode an image, keeping its original mode, which the inference transform
    needs to match OpenCLIP exactly; EXIF orientation is ignored, as OpenCLIP ignores it.

    ``name`` labels the image in error messages (e.g. a shard key for bytes); it defaults to the
    path, or ``<N bytes>`` for byte input.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        label = name if name is not None else f"<{len(data)} bytes>"
        if not data:
            raise ImageDecodeError(f"image {label!r}: cannot decode (empty, 0 bytes)")
        source: io.BytesIO | Path = io.BytesIO(data)
    else:
        source = Path(path_or_bytes)
        label = name if name is not None else str(source)
        if not source.is_file():
            reason = "is a directory" if source.is_dir() else "file not found"
            raise ImageDecodeError(f"image {label!r}: cannot open ({reason})")
        if source.stat().st_size == 0:
            raise ImageDecodeError(f"image {label!r}: cannot decode (empty file, 0 bytes)")
    try:
        # The context closes the file; load() has already copied the pixels into memory.
        with Image.open(source) as img:
            img.load()
    except Exception as err:
        # Pillow signals corrupt input with OSError, SyntaxError, ValueError, struct.error,
        # DecompressionBombError and more, depending on the format plugin.
        raise ImageDecodeError(
            f"image {label!r}: cannot decode ({type(err).__name__}: {err})"
        ) from err
    return img
