"""The zero-shot head of a run, from the config's prompt options or the set's own prompts.

Which prompts, first match wins: ``descriptors`` (DCLIP), ``cupl`` (CuPL), ``waffle``
(WaffleCLIP) or ``templates``, whichever is given; the set's ``class_prompts`` (e.g. the
held-out shapes pairs, whose names need "a"/"an" chosen per colour), unless ``classnames``
renames the classes; the set's ``templates``; OpenAI's 80 ImageNet templates. The set's own
prompts are English, so another ``language`` goes straight to the packaged templates of that
language.
"""

from __future__ import annotations

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
    text_encoder = encoder.encoder  # the run's device, precision and batch size
    options = config.head
    label = str(config.model if config.model is not None else config.pretrained)
    if options.descriptors is not None:
        descriptors = load_descriptors(options.descriptors)
        head = descriptor_head(
            text_encoder, names, descriptors, source=options.descriptors, model_name=label
        )
    elif options.cupl is not None:
        prompts = load_class_prompts(options.cupl)
        head = cupl_head(text_encoder, names, prompts, source=options.cupl, model_name=label)
    elif options.waffle:
        head = waffle_head(text_encoder, names, seeds=(config.seed,), model_name=label)
    else:
        source, templates = _templates(config, dataset)
        if templates is None:
            prompts = dict(zip(names, dataset.class_prompts, strict=True))
            head = cupl_head(text_encoder, names, prompts, source=source, model_name=label)
        else:
            head = template_head(text_encoder, names, templates, source=source, model_name=label)
    return head.to("cpu")


def _templates(config: EvalConfig, dataset: EvalSet) -> tuple[str, list[str] | None]:
    """``(source, templates)``; templates None means "use the set's class prompts"."""
    if config.head.templates is not None:
        return config.head.templates, load_templates(
            config.head.templates, language=config.head.language
        )
    own_prompts = config.head.language == DEFAULT_LANGUAGE and config.head.classnames is None
    if own_prompts and getattr(dataset, "class_prompts", None):
        return f"{config.dataset} class prompts", None
    if config.head.language == DEFAULT_LANGUAGE and getattr(dataset, "templates", None):
        return f"{config.dataset} templates", list(dataset.templates)
    return DEFAULT_TEMPLATES, load_templates(DEFAULT_TEMPLATES, language=config.head.language)
