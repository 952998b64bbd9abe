"""The tasks that fit heads on the train split, tune them on the val split and score them on the
test split, in the label space of the classes with training samples (:class:`.common.LabelSpace`;
a class without any scores ``-inf`` and is listed in the details).

Linear probe: logistic regression on frozen features of the whole train split, its
regularisation chosen on the val split (then refitted on train + val). Few-shot adaptation: for
each shot count k and method, fit on k samples per class, beside the zero-shot baseline, under
one protocol (docs/evaluation.md, "Few-shot": the same shots for every method, searches on the
whole val split, GDA skipped at k = 1) so that numbers compare across runs and methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
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
from ...data.evalsets import EvalSet
from ..config import EvalConfig
from ..features import CachedEncoder, EncodedSet
from ..heads import zero_shot_head
from ..splits import open_roles
from .common import LABEL_TASKS, LabelSpace, TaskOutput, label_metrics

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
    return TaskOutput(metrics, details, {role: item.summary() for role, item in encoded.items()})


def fit_splits(
    config: EvalConfig, encoder: CachedEncoder
) -> tuple[EvalSet, dict[str, EncodedSet], LabelSpace]:
    """The test set, and the encoded test, train and val splits, of a task that fits on labels
    (few-shot, linear probe), with the label space of the train split's classes."""
    roles = open_roles(config, encoder, LABEL_TASKS)
    encoded = {role: encoder.images(item.dataset, item.describe()) for role, item in roles.items()}
    test_set = roles["test"].dataset
    return test_set, encoded, LabelSpace(encoded["train"].labels, list(test_set.classnames))


def run_linear_probe(config: EvalConfig, encoder: CachedEncoder) -> TaskOutput:
    """Test metrics of the probe; ``details["hparams"]`` holds the chosen lambda and sweep."""
    _, encoded, space = fit_splits(config, encoder)
    train, test = encoded["train"], encoded["test"]
    val_features, val_labels = space.val_subset(encoded["val"].features, encoded["val"].labels)
    probe = fit_linear_probe(
        train.features,
        space.compact(train.labels),
        val_features,
        val_labels,
        num_classes=len(space.classes),
    )
    logits = space.expand(probe.logits(test.features))
    details: dict[str, Any] = {"num_classes": space.num_classes, "hparams": probe.hparams}
    details["val_samples_used"] = len(val_labels)
    if space.missing:
        details["classes_without_training_samples"] = space.describe_missing()
    data = {role: item.summary() for role, item in encoded.items()}
    return TaskOutput(label_metrics(logits, test.labels), details, data)


Fit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], FewShotHead]


def _method_fits(
    config: EvalConfig, encoder: CachedEncoder, zs_weights: torch.Tensor, classnames: list[str]
) -> dict[str, Fit]:
    """One fit function ``(train_x, train_y, val_x, val_y) -> head`` per method; each works
    in the compact label space, whose zero-shot weights (K, D) are ``zs_weights``."""
    seed, model, tokenizer = config.seed, encoder.encoder.model, encoder.encoder.tokenizer
    return {
        "tip": partial(fit_tip_adapter, zero_shot_weights=zs_weights),
        "tip-f": partial(fit_tip_adapter, zero_shot_weights=zs_weights, finetune=True, seed=seed),
        "gda": partial(fit_gda, zero_shot_weights=zs_weights),
        "linear": partial(fit_linear_probe, num_classes=len(classnames)),
        "coop": partial(
            fit_coop, model=model, tokenizer=tokenizer, classnames=classnames, seed=seed
        ),
    }
