"""``run_eval``: one :class:`EvalConfig` in, one result document out (and on disk)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ..data.evalsets import detect_layout
from ..distributed import resolve_device
from ..encoder import Encoder
from ..models import CLIP, list_models
from ..models.digest import weights_digest
from .config import EvalConfig
from .features import CachedEncoder, FeatureCache, path_fingerprint
from .results import build_result, write_result
from .splits import ROLES, role_split
from .tasks.fewshot import run_fewshot, run_linear_probe
from .tasks.retrieval import run_retrieval
from .tasks.robustness import run_robustness
from .tasks.zeroshot import run_zeroshot

logger = logging.getLogger(__name__)

TASK_RUNNERS = {
    "zeroshot": run_zeroshot,
    "retrieval": run_retrieval,
    "linear-probe": run_linear_probe,
    "fewshot": run_fewshot,
    "robustness": run_robustness,
}


def build_encoder(config: EvalConfig, model: CLIP | None = None) -> CachedEncoder:
    """The config's model (or the given one) on its device, with tokenizer, inference
    transform, identity for the cache and the run's batching settings."""
    run = config.run
    options = {
        "precision": run.precision,
        "device": resolve_device(run.device),
        "batch_size": run.batch_size,
        "workers": run.workers,
        "progress": run.progress,
    }
    if model is None:  # the cache's identity fingerprints the checkpoint file, not its weights
        encoder = Encoder.load(config.model, config.pretrained, digest=False, **options)
    else:
        encoder = Encoder(model, **options)
    # The identity tells this model's features apart from another's: the name and the weights
    # file's fingerprint, else (a random or in-memory model) a digest of the weights themselves.
    name, sources = config.model, [config.pretrained]
    if name is not None and name not in list_models() and Path(name).suffix != ".json":
        sources.append(name)  # a checkpoint given as the model; a config file names no weights
    found = (path_fingerprint(source) for source in sources if source is not None)
    if (fingerprint := next(filter(None, found), None)) is not None:
        identity = {"name": name, "weights_file": fingerprint}
    else:
        identity = {"name": name, "weights_blake2b": weights_digest(encoder.model)}
    return CachedEncoder(
        encoder=encoder,
        identity=identity,
        max_skip_rate=config.data.max_skip_rate,
        cache=FeatureCache(run.cache_folder),
    )


def check_inputs(config: EvalConfig) -> None:
    """Fail on a missing or unknown set, or a malformed split, before a model is loaded."""
    ood = config.robustness.ood_dataset if config.robustness else None
    for spec in (config.dataset, ood):
        if spec is not None:
            detect_layout(spec)
    for role in ROLES:
        role_split(config, role)


def run_eval(
    config: EvalConfig, model: CLIP | None = None, *, encoder: CachedEncoder | None = None
) -> dict[str, Any]:
    """Run ``config.task`` and return its result document; write it to ``config.out`` if set.

    ``model`` evaluates an in-memory model instead of loading ``config.model`` /
    ``config.pretrained`` (which then only label the result); its features are cached under a
    digest of its weights. ``encoder`` (from :func:`build_encoder`) serves several runs of one
    model, so its weights are loaded or hashed once.
    """
    start = time.perf_counter()
    check_inputs(config)
    encoder = encoder or build_encoder(config, model)
    output = TASK_RUNNERS[config.task](config, encoder)
    model_info = {
        "name": config.model,
        "pretrained": config.pretrained,
        "identity": encoder.identity,
        "embed_dim": encoder.encoder.dim,
        "image_size": encoder.encoder.model.image_size,
    }
    document = build_result(config, output, model_info, time.perf_counter() - start)
    if config.out is not None:
        path = write_result(document, config.out)
        logger.info("wrote %s result to %s", config.task, path)
    return document
