"""The zero-shot head of a run, from the config's prompt options or the set's own prompts (the
order in docs/evaluation.md, "Zero-shot head"). The set's class prompts exist because the
held-out shapes pairs need "a"/"an" chosen per colour; they are English, so another
``language`` goes straight to the packaged templates of that language.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..data.evalsets import EvalSet
from ..zeroshot import (
    DEFAULT_LANGUAGE,
    ZeroShotHead,
    cupl_head,
    descriptor_head,
    load_class_prompts,
    load_classnames,
    load_descriptors,
    load_templates,
    template_head,
    waffle_head,
)
from .config import EvalConfig
from .features import CachedEncoder

DEFAULT_TEMPLATES = "openai_imagenet"


def head_classnames(config: EvalConfig, dataset: EvalSet) -> list[str]:
    """The class names the prompts use: the set's, or those of ``config.head.classnames``."""
    names = list(dataset.classnames)
    if config.head.classnames is None:
        return names
    given = load_classnames(config.head.classnames, language=config.head.language)
    if len(given) != len(names):
        raise ValueError(
            f"classnames file {config.head.classnames!r} names {len(given)} classes; "
            f"{config.dataset} has {len(names)}"
        )
    return given


def zero_shot_head(config: EvalConfig, encoder: CachedEncoder, dataset: EvalSet) -> ZeroShotHead:
    """Build the head (see the module docstring) with the run's encoder, so prompts are encoded
    at the run's precision; its tensors are returned on the CPU, where the features are."""
    names = head_classnames(config, dataset)
    label = str(config.model if config.model is not None else config.pretrained)
    if config.head.waffle:
        head = waffle_head(encoder.encoder, names, seeds=(config.seed,), model_name=label)
    else:
        build, prompts, source = _prompts(config, dataset, names)
        head = build(encoder.encoder, names, prompts, source=source, model_name=label)
    return head.to("cpu")


def _prompts(
    config: EvalConfig, dataset: EvalSet, names: list[str]
) -> tuple[Callable[..., ZeroShotHead], Any, str]:
    """``(head builder, its prompts, their source)``, first match wins."""
    options, name = config.head, config.dataset
    if options.descriptors is not None:
        return descriptor_head, load_descriptors(options.descriptors), options.descriptors
    if options.cupl is not None:
        return cupl_head, load_class_prompts(options.cupl), options.cupl
    if options.templates is not None:
        templates = load_templates(options.templates, language=options.language)
        return template_head, templates, options.templates
    english = options.language == DEFAULT_LANGUAGE
    if english and options.classnames is None and getattr(dataset, "class_prompts", None):
        prompts = dict(zip(names, dataset.class_prompts, strict=True))
        return cupl_head, prompts, f"{name} class prompts"
    if english and getattr(dataset, "templates", None):
        return template_head, list(dataset.templates), f"{name} templates"
    templates = load_templates(DEFAULT_TEMPLATES, language=options.language)
    return template_head, templates, DEFAULT_TEMPLATES
