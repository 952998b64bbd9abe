"""Build zero-shot heads from a model: templates (CLIP), descriptors (DCLIP), WaffleCLIP, CuPL.

Class weights come from prompts: encode each prompt, L2-normalise, average per class,
renormalise. Averaging the normalised embeddings of several templates ("a photo of a {}.",
"a drawing of a {}.") is CLIP's prompt ensemble; it is worth several points of accuracy over
one template. The same average over free-form per-class prompt lists is CuPL's class
embedding.

Every builder encodes its prompts with :func:`encode_prompt_sets` through an
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

import torch
import torch.nn.functional as F

from ..encoder import Encoder
from ..version import __version__
from .descriptors import DCLIP_FORMAT, descriptor_prompts, lists_for_classes
from .heads import ZeroShotHead, checked_classnames, class_means
from .waffle import DEFAULT_CHARACTERS, DEFAULT_PAIRS, WAFFLE_FORMAT, waffle_descriptors


def encode_prompt_sets(
    encoder: Encoder, prompt_sets: Sequence[Sequence[str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every class's prompts: ``(embeddings (N, D), class_index (N,))``.

    ``prompt_sets[c]`` are class ``c``'s prompts (at least one: the builders check), embedded
    unit-norm, in order, on the model's device.
    """
    flat = [prompt for prompts in prompt_sets for prompt in prompts]
    embeddings = encoder.texts(flat, on_device=True)  # (N, D)
    counts = torch.tensor([len(prompts) for prompts in prompt_sets], device=embeddings.device)
    return embeddings, torch.repeat_interleave(counts)  # (N, D), (N,)


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
    if not templates:
        raise ValueError("a zero-shot classifier needs at least one template")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"templates must contain '{{}}' for the class name: {bad[:3]}")
    prompts = [[template.format(name) for template in templates] for name in classnames]
    extra = {"templates": list(templates)}
    return _head(encoder, classnames, prompts, "templates", model_name, source, extra)


def build_classifier(
    encoder: Encoder, classnames: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """Zero-shot weights (C, D) of :func:`template_head`: unit-norm rows, ``logits = f @ W.T``."""
    return template_head(encoder, classnames, templates).weights


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
    return _head(encoder, classnames, prompts, "cupl", model_name, source)


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
    return _head(
        encoder, classnames, prompts, "dclip", model_name, source, extra, mean_similarity=True
    )


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
    return _head(
        encoder, classnames, prompts, "waffle", model_name, "random", extra, mean_similarity=True
    )


def _head(
    encoder: Encoder,
    classnames: tuple[str, ...],
    prompts: list[list[str]],
    method: str,
    model_name: str | None,
    source: str | None,
    extra: dict[str, Any] | None = None,
    *,
    mean_similarity: bool = False,
) -> ZeroShotHead:
    """The head of ``prompts[c]`` per class, ``"dot"`` or ``"mean_similarity"`` scored, with
    its provenance (module docstring; ``extra`` holds the method's own settings)."""
    embeddings, class_index = encode_prompt_sets(encoder, prompts)
    weights = F.normalize(class_means(embeddings, class_index, len(classnames)), dim=-1)  # (C, D)
    digest = hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode("utf-8")).hexdigest()
    provenance = {
        "method": method,
        "model": model_name,
        "source": source,
        "num_prompts": sum(len(p) for p in prompts),
        "prompts_sha256": digest,
        **(extra or {}),
        "clipforge_version": __version__,
    }
    if not mean_similarity:
        return ZeroShotHead(classnames, weights, provenance=provenance)
    prompt_tensors = {"prompt_embeddings": embeddings, "prompt_class": class_index}
    return ZeroShotHead(
        classnames, weights, scoring="mean_similarity", provenance=provenance, **prompt_tensors
    )
