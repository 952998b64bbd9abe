"""A disk cache of encoded features, keyed by everything that changes them.

Encoding the images is nearly all of an evaluation's cost; fitting a probe or sweeping shots on
the features takes seconds. So features are stored once per *key* (model identity, precision,
set, preprocessing: docs/evaluation.md, "Feature cache"), as ``<sha256 of the key>.safetensors``
written atomically. The key is stored in the file's metadata and compared on reading, so a
collision or a foreign file is a miss, never someone else's features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..models import list_models
from ..models.digest import weights_digest

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
METADATA_KEY = "clipforge.features"


def default_cache_dir() -> Path:
    """``$CLIPFORGE_CACHE/features``, else ``$XDG_CACHE_HOME/clipforge/features``, else
    ``~/.cache/clipforge/features``: where the command line caches features by default."""
    if os.environ.get("CLIPFORGE_CACHE"):
        return Path(os.environ["CLIPFORGE_CACHE"]) / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clipforge" / "features"


def path_fingerprint(path: str | os.PathLike) -> dict[str, Any] | None:
    """Resolved path, size and modification time of an existing file or folder, else None.

    Cheap (one ``stat``) where hashing a multi-gigabyte checkpoint would not be; a checkpoint
    rewritten in place gets a new mtime and so a new fingerprint. A folder's own mtime changes
    when entries are added or removed, and its files are fingerprinted one level deep.
    """
    path = Path(path)
    if not path.exists():
        return None
    stat = path.stat()
    found: dict[str, Any] = {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    if path.is_dir():
        found["files"] = [
            [child.name, child.stat().st_size, child.stat().st_mtime_ns]
            for child in sorted(path.iterdir())
            if child.is_file()
        ]
    return found


def model_identity(
    model: torch.nn.Module, name: str | None, pretrained: str | os.PathLike | None
) -> dict[str, Any]:
    """What tells this model's features apart from another's.

    With weights read from a file (``pretrained``, or ``name`` being a checkpoint) the name and
    the file's :func:`path_fingerprint`; otherwise (a randomly initialised or in-memory model)
    a digest of the weights themselves.
    """
    label = None if name is None else str(name)
    sources = [pretrained]
    if name is not None and label not in list_models() and Path(label).suffix != ".json":
        sources.append(name)  # a checkpoint given as the model; a config file names no weights
    for source in sources:
        if source is not None and (fingerprint := path_fingerprint(source)) is not None:
            return {"name": label, "weights_file": fingerprint}
    return {"name": label, "weights_blake2b": weights_digest(model)}


class FeatureCache:
    """Tensors by key in ``directory``; a cache with ``directory=None`` holds nothing."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.directory = None if directory is None else Path(directory)

    def _path(self, key: dict[str, Any]) -> Path:
        text = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True)
        return self.directory / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.safetensors"

    def get(self, key: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """``(tensors, info)`` stored under ``key``, or None."""
        if self.directory is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                document = json.loads((f.metadata() or {})[METADATA_KEY])
                tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, KeyError, ValueError) as err:
            logger.warning("feature cache %s is unreadable (%s); recomputing", path, err)
            return None
        if document.get("key") != json.loads(json.dumps({"format": CACHE_FORMAT, **key})):
            logger.warning("feature cache %s holds another key; recomputing", path)
            return None
        return tensors, document["info"]

    def put(self, key: dict[str, Any], tensors: dict[str, torch.Tensor], info: dict) -> None:
        """Store ``tensors`` (and the JSON ``info``) under ``key``, atomically."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        document = json.dumps({"key": {"format": CACHE_FORMAT, **key}, "info": info})
        contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        path = self._path(key)
        with atomic_path(path) as tmp:
            save_file(contiguous, str(tmp), metadata={METADATA_KEY: document})
        logger.info("cached features in %s", path)
