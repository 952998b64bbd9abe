"""Frozen features of an evaluation set: encoded once, in order, with a progress bar; cached.

:class:`CachedEncoder` puts a :class:`~clipforge.evaluate.cache.FeatureCache` in front of the
run's :class:`~clipforge.encoder.Encoder`. Features are stored as the model returns them
(unnormalised, float32): the tasks normalise where their method does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..data.evalsets import EvalLoader, EvalSet, LabelBatch
from ..encoder import Encoder
from .cache import FeatureCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedSet:
    """The readable samples of one set, encoded.

    ``features`` float32 (N, D), unnormalised; ``indices`` int64 (N,) their positions in the
    set (skipped samples are absent); ``labels`` int64 (N,) or float32 (N, C) multi-hot for a
    labelled set, else None; ``skips`` the loader's :meth:`SkipStats.to_dict`; ``seconds``
    the encoding time (0 when read from the cache).
    """

    features: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor | None
    skips: dict[str, Any]
    seconds: float
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

    def _key(self, kind: str) -> dict[str, Any]:
        """The cache key's common part: the resolved precision, since ``auto`` differs by
        machine and every precision changes the features."""
        return {"kind": kind, "model": self.identity, "precision": self.encoder.precision.name}

    def images(self, dataset: EvalSet, describe: dict[str, Any]) -> EncodedSet:
        """Encode every readable image of ``dataset``; ``describe`` names the set for the cache
        key (spec, split, layout options); model, preprocessing (how images are resized and
        normalised) and sample keys are added here."""
        keys = "".join(f"{dataset.key(i)}\0" for i in range(len(dataset)))  # same keys, same order
        key = self._key("images")
        key.update(
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
        seconds = time.perf_counter() - start
        encoded = torch.cat(features)
        logger.info(
            "%s: encoded %d images in %.1f s (%.0f images/s)",
            dataset.name,
            len(encoded),
            seconds,
            len(encoded) / max(seconds, 1e-9),
        )
        return EncodedSet(
            encoded,
            torch.cat(indices),
            torch.cat(labels) if labels else None,
            loader.stats.to_dict(),
            seconds,
            False,
        )

    def texts(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised float32 text features (T, D) of ``texts``, cached like images."""
        digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()
        key = self._key("texts")
        key.update(count=len(texts), texts_sha256=digest)
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0]["features"]
        features = self.encoder.texts(texts, normalize=False)
        self.cache.put(key, {"features": features}, {})
        return features
