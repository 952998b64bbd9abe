"""Build zero-shot heads from a model: templates (CLIP), descriptors (DCLIP), WaffleCLIP, CuPL.

Every builder encodes its prompts with :func:`~.classifier.encode_prompt_sets` through an
:class:`~clipforge.encoder.Encoder` (its device, precision and batch size; eval mode,
unit-norm embeddings) and records provenance: the method, ``model`` (the name or checkpoint
the caller loaded, as given), ``source`` (where the templates or descriptors came from),
the number of prompts and a SHA-256 of the prompt list, so a saved head tells what it was
built from and two heads built from different prompts can be told apart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F

from ..encoder import Encoder
from ..version import __version__
from .classifier import build_classifier, class_means, encode_prompt_sets
from .descriptors import DCLIP_FORMAT, descriptor_prompts, lists_for_classes
from .heads import ZeroShotHead, checked_classnames
from .waffle import DEFAULT_CHARACTERS, DEFAULT_PAIRS, WAFFLE_FORMAT, waffle_descriptors


def template_head(
    encoder: Encoder,
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    model_name: str | None = None,
    source: str | None = None,
) -> ZeroShotHead:
    """CLIP's recipe: W_c = normalise(mean_t normalise(embed(template_t.format(c))))."""
    classnames = checked_classnames(classnames)
    weights = build_classifier(encoder, classnames, templates)
    prompts = [[template.format(name) for template in templates] for name in classnames]
    extra = {"templates": list(templates)}
    return ZeroShotHead(
        classnames, weights, provenance=_provenance("templates", model_name, source, prompts, extra)
    )


def cupl_head(
    encoder: Encoder,
    classnames: Sequence[str],
    class_prompts: Mapping[str, Sequence[str]],
    *,
    model_name: str | None = None,
    source: str = "CuPL prompts",
) -> ZeroShotHead:
    """CuPL: W_c = normalise(mean over c's own prompts of their normalised embeddings)."""
    classnames = checked_classnames(classnames)
    prompts = lists_for_classes(classnames, class_prompts, "prompt", source)
    embeddings, class_index = encode_prompt_sets(encoder, prompts)
    weights = F.normalize(class_means(embeddings, class_index, len(classnames)), dim=-1)  # (C, D)
    return ZeroShotHead(
        classnames, weights, provenance=_provenance("cupl", model_name, source, prompts, {})
    )


def descriptor_head(
    encoder: Encoder,
    classnames: Sequence[str],
    descriptors: Mapping[str, Sequence[str]],
    *,
    prompt_format: str = DCLIP_FORMAT,
    rewrite: bool = True,
    model_name: str | None = None,
    source: str = "descriptors",
) -> ZeroShotHead:
    """DCLIP: class score = mean similarity to the prompts of c's descriptors."""
    classnames = checked_classnames(classnames)
    prompts = descriptor_prompts(
        classnames, descriptors, prompt_format=prompt_format, rewrite=rewrite, source=source
    )
    extra = {"prompt_format": prompt_format, "rewrite": rewrite}
    provenance = _provenance("dclip", model_name, source, prompts, extra)
    return _mean_similarity_head(encoder, classnames, prompts, provenance)


def waffle_head(
    encoder: Encoder,
    classnames: Sequence[str],
    *,
    seeds: Sequence[int] = (0,),
    pairs: int = DEFAULT_PAIRS,
    prompt_format: str = WAFFLE_FORMAT,
    words: Sequence[str] | None = None,
    characters: str = DEFAULT_CHARACTERS,
    model_name: str | None = None,
) -> ZeroShotHead:
    """WaffleCLIP: DCLIP scoring over ``2 * pairs`` random descriptors per seed, all classes alike.

    The descriptors of all ``seeds`` are pooled; since every seed adds the same number, the
    score is the mean over seeds of the one-seed scores (an ensemble over draws).
    """
    classnames = checked_classnames(classnames)
    if not seeds:
        raise ValueError("waffle_head needs at least one seed")
    shared = [
        descriptor
        for seed in seeds
        for descriptor in waffle_descriptors(
            classnames, seed=seed, pairs=pairs, words=words, characters=characters
        )
    ]
    descriptors = {name: shared for name in classnames}
    prompts = descriptor_prompts(
        classnames, descriptors, prompt_format=prompt_format, source="WaffleCLIP"
    )
    extra = {
        "seeds": list(seeds),
        "pairs": pairs,
        "prompt_format": prompt_format,
        "word_pool": "clip_bpe_vocabulary" if words is None else f"{len(words)} given words",
        "characters": characters,
    }
    provenance = _provenance("waffle", model_name, "random", prompts, extra)
    return _mean_similarity_head(encoder, classnames, prompts, provenance)


def _mean_similarity_head(
    encoder: Encoder,
    classnames: tuple[str, ...],
    prompts: list[list[str]],
    provenance: dict[str, Any],
) -> ZeroShotHead:
    embeddings, class_index = encode_prompt_sets(encoder, prompts)
    weights = F.normalize(class_means(embeddings, class_index, len(classnames)), dim=-1)  # (C, D)
    return ZeroShotHead(
        classnames,
        weights,
        scoring="mean_similarity",
        prompt_embeddings=embeddings,
        prompt_class=class_index,
        provenance=provenance,
    )


def _provenance(
    method: str,
    model_name: str | None,
    source: str | None,
    prompts: list[list[str]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode("utf-8")).hexdigest()
    return {
        "method": method,
        "model": model_name,
        "source": source,
        "num_prompts": sum(len(p) for p in prompts),
        "prompts_sha256": digest,
        **extra,
        "clipforge_version": __version__,
    }
