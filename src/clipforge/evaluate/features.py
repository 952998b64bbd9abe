"""Frozen features of an evaluation set: encoded once, in order, with a progress bar; cached.

Encoding the images is nearly all of an evaluation's cost; fitting a probe or sweeping shots on
the features takes seconds. So :class:`CachedEncoder` puts a :class:`FeatureCache` in front of
the run's :class:`~clipforge.encoder.Encoder`: features are stored once per *key* (model
identity, precision, set, preprocessing: docs/evaluation.md, "Feature cache"), as ``<sha256 of
the key>.safetensors`` written atomically. The key is stored in the file's metadata and compared
on reading, so a collision or a foreign file is a miss, never someone else's features. Features
are stored as the model returns them (unnormalised, float32): the tasks normalise where their
method does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.evalsets import EvalLoader, EvalSet, LabelBatch
from ..encoder import Encoder
from ..zeroshot.heads import read_document_file, write_document_file

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
    """Resolved path, size and modification time of an existing file or folder (and of its
    files, one level deep), else None: one ``stat`` where hashing a multi-gigabyte checkpoint
    would not be, and a checkpoint rewritten in place gets a new mtime."""
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


class FeatureCache:
    """Tensors by key in ``directory``; a cache with ``directory=None`` holds nothing."""

    def __init__(self, directory: str | os.PathLike | None) -> None:
        self.directory = None if directory is None else Path(directory)

    def _entry(self, key: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        """The file of ``key`` and the key as its JSON round trip (what the file records)."""
        text = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True)
        name = f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.safetensors"
        return self.directory / name, json.loads(text)

    def get(self, key: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """``(tensors, info)`` stored under ``key``, or None."""
        if self.directory is None:
            return None
        path, full_key = self._entry(key)
        if not path.is_file():
            return None
        try:
            tensors, document = read_document_file(path, METADATA_KEY, "feature cache")
            if document["key"] != full_key:
                logger.warning("feature cache %s holds another key; recomputing", path)
                return None
            return tensors, document["info"]
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("feature cache %s is unreadable (%s); recomputing", path, err)
            return None

    def put(self, key: dict[str, Any], tensors: dict[str, torch.Tensor], info: dict) -> None:
        """Store ``tensors`` (and the JSON ``info``) under ``key``, atomically."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path, full_key = self._entry(key)
        write_document_file(path, METADATA_KEY, tensors, {"key": full_key, "info": info})
        logger.info("cached features in %s", path)


@dataclass(frozen=True)
class EncodedSet:
    """The readable samples of one set, encoded."""

    features: torch.Tensor  # float32 (N, D), unnormalised
    indices: torch.Tensor  # int64 (N,): positions in the set (skipped samples are absent)
    labels: torch.Tensor | None  # int64 (N,), float32 (N, C) multi-hot, or None (unlabelled)
    skips: dict[str, Any]  # the loader's SkipStats.to_dict()
    seconds: float  # encoding time, 0 when read from the cache
    cached: bool

    def summary(self) -> dict[str, Any]:
        """Sample counts and skips for the result file."""
        return {
            "samples": int(self.indices.numel()),
            "seen": self.skips["seen"],
            "skipped": sum(self.skips["counts"].values()),
            "skip_counts": self.skips["counts"],
            "skip_examples": self.skips["examples"],
            "encode_seconds": round(self.seconds, 3),
            "images_per_second": (
                round(self.indices.numel() / self.seconds, 1) if self.seconds > 0 else None
            ),
            "cached": self.cached,
        }


@dataclass
class CachedEncoder:
    """The run's encoder (its model, tokenizer and transform are ``encoder.model``, ...), the
    cache in front of it, and what tells its features apart."""

    encoder: Encoder
    identity: dict[str, Any]
    max_skip_rate: float = 0.1
    cache: FeatureCache = dataclasses.field(default_factory=lambda: FeatureCache(None))

    def _key(self, kind: str, **specific: Any) -> dict[str, Any]:
        """The cache key: the ``specific`` part, the model and the resolved precision, since
        ``auto`` differs by machine and every precision changes the features."""
        model, precision = self.identity, self.encoder.precision.name
        return {"kind": kind, "model": model, "precision": precision, **specific}

    def images(self, dataset: EvalSet, describe: dict[str, Any]) -> EncodedSet:
        """Encode every readable image of ``dataset``; ``describe`` names the set for the cache
        key (spec, split, layout options); model, preprocessing (how images are resized and
        normalised) and sample keys are added here."""
        keys = "".join(f"{dataset.key(i)}\0" for i in range(len(dataset)))  # same keys, same order
        key = self._key(
            "images",
            preprocess=dataclasses.asdict(self.encoder.transform.config),
            set=describe,
            samples=len(dataset),
            keys_sha256=hashlib.sha256(keys.encode("utf-8")).hexdigest(),
        )
        hit = self.cache.get(key)
        if hit is not None:
            tensors, info = hit
            logger.info(
                "%s: %d image features read from the cache", dataset.name, len(tensors["indices"])
            )
            tensors = {"labels": None, **tensors}  # an unlabelled set stores no labels
            return EncodedSet(**tensors, skips=info["skips"], seconds=0.0, cached=True)
        encoded = self._encode(dataset)
        tensors = {name: getattr(encoded, name) for name in ("features", "indices", "labels")}
        tensors = {name: tensor for name, tensor in tensors.items() if tensor is not None}
        self.cache.put(key, tensors, {"skips": encoded.skips})
        return encoded

    def _encode(self, dataset: EvalSet) -> EncodedSet:
        loader = EvalLoader(
            dataset,
            batch_size=self.encoder.batch_size,
            workers=self.encoder.workers,
            max_skip_rate=self.max_skip_rate,
            pin_memory=self.encoder.pin_memory,
        )
        features, indices, labels = [], [], []
        start = time.perf_counter()
        for batch, batch_features in self.encoder.stream(
            loader,
            pixels=lambda batch: batch.pixels,
            samples=lambda batch: batch.size + len(batch.skipped),
            label=f"encode {dataset.name}",
            total=len(dataset),
            normalize=False,
        ):
            features.append(batch_features)  # (B, D)
            indices.append(batch.indices)
            if isinstance(batch, LabelBatch):
                labels.append(batch.labels)
        seconds, count = time.perf_counter() - start, sum(len(f) for f in features)
        rate = count / max(seconds, 1e-9)
        logger.info("%s: encoded %d images in %.1f s (%.0f/s)", dataset.name, count, seconds, rate)
        labelled = torch.cat(labels) if labels else None
        skips = loader.stats.to_dict()
        return EncodedSet(torch.cat(features), torch.cat(indices), labelled, skips, seconds, False)

    def texts(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised float32 text features (T, D) of ``texts``, cached like images."""
        digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()
        key = self._key("texts", count=len(texts), texts_sha256=digest)
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0]["features"]
        features = self.encoder.texts(texts, normalize=False)
        self.cache.put(key, {"features": features}, {})
        return features
