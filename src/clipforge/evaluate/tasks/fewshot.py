"""Few-shot adaptation: for each shot count k and method, fit on k samples per class of the
train split, tune on the val split, score on the test split; the zero-shot head is the baseline.

Protocol, so that numbers compare across runs and methods:

* the k-shot indices come from :func:`clipforge.adapt.sample_few_shot` with the run's seed,
  drawn from the TRAIN split only; every method sees the same shots for a given k;
* hyperparameters (Tip-Adapter's alpha/beta, GDA's alpha, the probe's lambda) are searched on
  the whole VAL split; CoOp has no search and records its val accuracy; the test split is
  used for the final numbers only;
* GDA at k = 1 is recorded as ``None`` with the reason (one sample per class has no
  covariance), not run;
* the label space of the adapted heads is the set of classes that have training samples. A
  class absent from the train split (the shapes world's held-out-pair set has 80 classes of
  which 16 occur) gets no shots and a logit of ``-inf``: it can never be predicted. The result
  lists those classes, and adds ``zeroshot_shot_classes``, the zero-shot head restricted to the
  same label space, so the gain from adaptation is not confused with the gain from knowing
  which classes occur.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ...adapt import (
    FewShotHead,
    fit_coop,
    fit_gda,
    fit_linear_probe,
    fit_tip_adapter,
    sample_few_shot,
)
from ..config import EvalConfig
from ..features import CachedEncoder
from ..heads import zero_shot_head
from .common import TaskOutput, fit_splits, label_metrics, summaries

logger = logging.getLogger(__name__)

# One shot per class gives GDA a zero scatter matrix: no covariance to shrink, no classifier.
GDA_ONE_SHOT = "GDA needs at least two shots per class to estimate a covariance"


def run_fewshot(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Zero-shot baseline plus ``metrics["fewshot"][method][k]`` for each method and k."""
    test_set, encoded, space = fit_splits(config, encoder)
    test, train = encoded["test"], encoded["train"]
    head = zero_shot_head(config, encoder, test_set)
    zs_logits = head.logits(test.features)  # (N, C) cosine
    metrics: dict[str, Any] = {"zeroshot": label_metrics(zs_logits, test.labels)}
    details: dict[str, Any] = {"head": head.provenance, "num_classes": space.num_classes}
    if space.missing:
        logger.warning(
            "%d of %d classes have no training samples and get no shots (e.g. %s)",
            len(space.missing),
            space.num_classes,
            space.missing[:3],
        )
        restricted = space.expand(zs_logits[:, space.classes])
        metrics["zeroshot_shot_classes"] = label_metrics(restricted, test.labels)
        details["classes_without_shots"] = space.describe_missing()
    val = space.val_subset(encoded["val"].features, encoded["val"].labels)
    details["val_samples_used"] = len(val[1])
    fits = _method_fits(config, encoder, head.weights[space.classes], space.names)
    train_compact = space.compact(train.labels)
    results: dict[str, dict[str, Any]] = {method: {} for method in config.fewshot.methods}
    hparams: dict[str, dict[str, Any]] = {method: {} for method in config.fewshot.methods}
    for k in config.fewshot.shots:
        shots = torch.from_numpy(
            sample_few_shot(train_compact, k, config.seed, num_classes=len(space.classes))
        )
        for method in config.fewshot.methods:
            if method == "gda" and k == 1:
                results[method][str(k)] = None
                hparams[method][str(k)] = {"skipped": GDA_ONE_SHOT}
                continue
            fitted = fits[method](train.features[shots], train_compact[shots], *val)
            logits = space.expand(fitted.logits(test.features).float())
            results[method][str(k)] = label_metrics(logits, test.labels)
            hparams[method][str(k)] = fitted.hparams
            logger.info("%s %d-shot: acc1 %.4f", method, k, results[method][str(k)]["acc1"])
    metrics["fewshot"] = results
    details.update(hparams=hparams, shots=list(config.fewshot.shots), seed=config.seed)
    return TaskOutput(metrics, details, summaries(encoded))


Fit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], FewShotHead]


def _method_fits(
    config: EvalConfig, encoder: CachedEncoder, zs_weights: torch.Tensor, classnames: list[str]
) -> dict[str, Fit]:
    """One fit function ``(train_x, train_y, val_x, val_y) -> head`` per method; each works
    in the compact label space, whose zero-shot weights (K, D) are ``zs_weights``."""
    seed, num_classes = config.seed, len(classnames)
    return {
        "tip": lambda x, y, vx, vy: fit_tip_adapter(x, y, vx, vy, zero_shot_weights=zs_weights),
        "tip-f": lambda x, y, vx, vy: fit_tip_adapter(
            x, y, vx, vy, zero_shot_weights=zs_weights, finetune=True, seed=seed
        ),
        "gda": lambda x, y, vx, vy: fit_gda(x, y, vx, vy, zero_shot_weights=zs_weights),
        "linear": lambda x, y, vx, vy: fit_linear_probe(x, y, vx, vy, num_classes=num_classes),
        "coop": lambda x, y, vx, vy: fit_coop(
            x,
            y,
            vx,
            vy,
            model=encoder.encoder.model,
            tokenizer=encoder.encoder.tokenizer,
            classnames=classnames,
            seed=seed,
        ),
    }
