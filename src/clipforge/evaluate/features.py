"""Frozen features of an evaluation set: encoded once, in order, with a progress bar; cached.

:class:`Encoder` holds the model on its device with its precision, tokenizer and preprocessing.
:meth:`Encoder.images` encodes every readable image of a set (unreadable ones are skipped and
counted by :class:`~clipforge.data.evalsets.EvalLoader`) and returns an :class:`EncodedSet`;
with a :class:`~clipforge.evaluate.cache.FeatureCache` a second call with the same model,
set, split and preprocessing reads the features from disk and never runs the image tower.
Features are stored as the model returns them (unnormalised, float32): the tasks normalise
where their method does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..data.evalsets import EvalLoader, EvalSet, LabelBatch
from ..data.skips import SkipStats
from ..models import CLIP
from ..precision import resolve_precision
from ..transforms import InferenceTransform, PreprocessConfig
from ..zeroshot.classifier import Tokenizer
from .cache import FeatureCache, keys_digest

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
class Encoder:
    """A model ready to encode evaluation data, and the settings that change its features."""

    model: CLIP
    tokenizer: Tokenizer
    transform: InferenceTransform
    identity: dict[str, Any]
    device: torch.device
    precision: str = "fp32"
    batch_size: int = 256
    workers: int = 0
    max_skip_rate: float = 0.1
    progress: bool = True
    cache: FeatureCache = dataclasses.field(default_factory=lambda: FeatureCache(None))

    def _autocast(self) -> contextlib.AbstractContextManager:
        return resolve_precision(self.precision, self.device).autocast()

    @property
    def preprocess(self) -> PreprocessConfig:
        """How images are resized and normalised (part of every image-feature cache key)."""
        return self.transform.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def images(self, dataset: EvalSet, describe: dict[str, Any]) -> EncodedSet:
        """Encode every readable image of ``dataset``; ``describe`` names the set for the cache
        key (spec, split, layout options); model, preprocessing and sample keys are added here."""
        key = {
            "kind": "images",
            "model": self.identity,
            "precision": self.precision,
            "preprocess": dataclasses.asdict(self.preprocess),
            "set": describe,
            "samples": len(dataset),
            "keys_sha256": keys_digest([dataset.key(i) for i in range(len(dataset))]),
        }
        hit = self.cache.get(key)
        if hit is not None:
            tensors, info = hit
            logger.info(
                "%s: %d image features read from the cache", dataset.name, len(tensors["indices"])
            )
            return EncodedSet(
                tensors["features"],
                tensors["indices"],
                tensors.get("labels"),
                info["skips"],
                0.0,
                True,
            )
        encoded = self._encode(dataset)
        tensors = {"features": encoded.features, "indices": encoded.indices}
        if encoded.labels is not None:
            tensors["labels"] = encoded.labels
        self.cache.put(key, tensors, {"skips": encoded.skips})
        return encoded

    @torch.no_grad()
    def _encode(self, dataset: EvalSet) -> EncodedSet:
        loader = EvalLoader(
            dataset,
            batch_size=self.batch_size,
            workers=self.workers,
            max_skip_rate=self.max_skip_rate,
            pin_memory=self.device.type == "cuda",
        )
        features, indices, labels = [], [], []
        self.model.eval()
        start = time.perf_counter()
        with _progress(dataset.name, len(dataset), self.progress) as advance, self._autocast():
            for batch in loader:
                pixels = batch.pixels.to(self.device, self.dtype, non_blocking=True)
                features.append(self.model.encode_image(pixels).float().cpu())  # (B, D)
                indices.append(batch.indices)
                if isinstance(batch, LabelBatch):
                    labels.append(batch.labels)
                advance(batch.size + len(batch.skipped))
        seconds = time.perf_counter() - start
        encoded = torch.cat(features)
        logger.info(
            "%s: encoded %d images in %.1f s (%.0f images/s)",
            dataset.name,
            len(encoded),
            seconds,
            len(encoded) / max(seconds, 1e-9),
        )
        stats: SkipStats = loader.stats
        return EncodedSet(
            encoded,
            torch.cat(indices),
            torch.cat(labels) if labels else None,
            stats.to_dict(),
            seconds,
            False,
        )

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised float32 text features (T, D) of ``texts``, cached like images."""
        digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode("utf-8")).hexdigest()
        key = {"kind": "texts", "model": self.identity, "precision": self.precision}
        key.update(count=len(texts), texts_sha256=digest)
        hit = self.cache.get(key)
        if hit is not None:
            return hit[0]["features"]
        self.model.eval()
        chunks = []
        with self._autocast():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
                chunks.append(self.model.encode_text(tokens).float().cpu())  # (b, D)
        features = torch.cat(chunks)
        self.cache.put(key, {"features": features}, {})
        return features


@contextlib.contextmanager
def _progress(name: str, total: int, enabled: bool):
    """A rich bar over the samples of one set (silent when not ``enabled``); yields ``advance``."""
    bar = Progress(
        TextColumn(f"[bold]encode {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )
    task = bar.add_task("encode", total=total)
    with bar:
        yield lambda count: bar.advance(task, count)
