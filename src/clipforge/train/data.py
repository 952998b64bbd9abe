"""Turn a run's data section into :class:`StepBatches`.

The shapes world is rendered once into memory (uint8, a few hundred MB at most) in worker
processes: drawing is the slow part, and a model trained for minutes on CPU revisits every
sample several times. Shards and tables stream through :func:`build_image_text_loader`.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from ..data.loader import DataSpec, build_image_text_loader
from ..data.shapes import ShapesWorld
from ..distributed import all_gather_rows, world_info
from ..tokenizer import Tokenizer
from ..transforms import image_transform
from .batches import LoaderBatches, StepBatches, TensorBatches
from .config import TrainConfig

log = logging.getLogger(__name__)


def _render_range(args: tuple[int, int, int, int, int]) -> tuple[np.ndarray, list[list[str]]]:
    seed, image_size, captions_per_sample, start, stop = args
    world = ShapesWorld(seed=seed, image_size=image_size)
    images = np.empty((stop - start, image_size, image_size, 3), dtype=np.uint8)
    captions = []
    for row, index in enumerate(range(start, stop)):
        scene = world.scene("train", index)
        images[row] = np.asarray(world.render(scene))
        captions.append(
            [world.caption("train", index, scene, v) for v in range(captions_per_sample)]
        )
    return images, captions


def render_shapes(
    n: int,
    *,
    seed: int,
    image_size: int,
    workers: int = 2,
    captions_per_sample: int = 1,
    first: int = 0,
) -> tuple[torch.Tensor, list[list[str]]]:
    """Samples ``first..first+n-1`` of the shapes world's train split as uint8 images
    (n, 3, S, S), and for each the captions of variants ``0..captions_per_sample-1`` (variant 0
    is ``world.sample``'s)."""
    start = time.perf_counter()
    chunk = max(1, -(-n // (4 * max(1, workers))))
    jobs = [(seed, image_size, captions_per_sample, i, min(first + n, i + chunk))
            for i in range(first, first + n, chunk)]  # fmt: skip
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_render_range, jobs))
    else:
        parts = [_render_range(job) for job in jobs]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).permute(0, 3, 1, 2)
    captions = [c for p in parts for c in p[1]]
    log.info("rendered %d train samples in %.1fs", n, time.perf_counter() - start)
    return images.contiguous(), captions


def shapes_tensors(
    cfg: TrainConfig, *, image_size: int, tokenizer: Tokenizer
) -> tuple[torch.Tensor, torch.Tensor]:
    """A shapes run's whole data set: uint8 images (N, 3, S, S) and token ids, (N, L) or
    (N, K, L) with ``data.captions_per_sample`` = K > 1.

    In a multi-process run each rank renders and tokenizes a contiguous share of the samples
    and the shares are exchanged, so drawing takes 1/world_size of the time and every rank
    ends with the same tensors a single process would make.
    """
    data = cfg.data
    rank, world_size = world_info()
    first, stop = (data.num_samples * r // world_size for r in (rank, rank + 1))
    images, captions = render_shapes(
        stop - first,
        seed=cfg.run.seed,
        image_size=image_size,
        workers=max(1, data.workers // world_size),
        captions_per_sample=data.captions_per_sample,
        first=first,
    )
    tokens = tokenizer([text for texts in captions for text in texts])
    if data.captions_per_sample > 1:
        tokens = tokens.view(len(captions), data.captions_per_sample, -1)
    if world_size > 1:
        images, tokens = all_gather_rows(images), all_gather_rows(tokens)
    return images, tokens


def build_batches(cfg: TrainConfig, *, image_size: int, context_length: int) -> StepBatches:
    """One batch per step for this rank, as ``cfg.data`` describes."""
    data, run = cfg.data, cfg.run
    rank, world_size = world_info()
    tokenizer = Tokenizer(context_length=context_length)
    if data.kind == "shapes":
        images, tokens = shapes_tensors(cfg, image_size=image_size, tokenizer=tokenizer)
        return TensorBatches(
            images,
            tokens,
            batch_size=data.batch_size,
            seed=run.seed,
            rank=rank,
            world_size=world_size,
        )
    spec = DataSpec(
        kind=data.kind,
        urls=data.train,
        weights=data.weights or None,
        image_root=data.image_root or None,
        image_column=data.image_key,
        caption_columns=(data.caption_key,),
        num_samples=data.num_samples if data.resampled else None,
    )
    transform = image_transform(image_size, is_train=data.augment)

    def make(epoch: int):
        return build_image_text_loader(
            spec,
            transform=transform,
            tokenizer=tokenizer,
            batch_size=data.batch_size,
            workers=data.workers,
            seed=run.seed,
            rank=rank,
            world_size=world_size,
            epoch=epoch,
            resampled=data.resampled,
            max_skip_rate=data.max_skip_rate,
        )

    steps_per_epoch = max(1, data.num_samples // (data.batch_size * world_size))
    return LoaderBatches(make, steps_per_epoch)
