"""Zero-shot classifier heads: class names x templates (CLIP), descriptors (DCLIP), random
descriptors (WaffleCLIP), per-class prompts (CuPL); saving, loading and ensembling heads.

Typical use (``model`` from ``clipforge.create_model``)::

    classnames = load_classnames(dataset="imagenet1k")
    templates = load_templates("openai_imagenet")  # OpenAI's 80 ImageNet templates
    encoder = Encoder(model)  # clipforge.encoder: device, precision, tokenizer
    head = template_head(encoder, classnames, templates, model_name="ViT-B-32")
    logits = head.logits(model.encode_image(pixels))  # (B, C) cosine similarities
    save_head(head, "imagenet_head.safetensors")
"""

from .builders import (
    build_classifier,
    cupl_head,
    descriptor_head,
    encode_prompt_sets,
    template_head,
    waffle_head,
)
from .descriptors import (
    DCLIP_FORMAT,
    descriptor_prompts,
    descriptor_sentence,
    load_class_prompts,
    load_descriptors,
)
from .heads import Head, HeadEnsemble, ZeroShotHead, average_weights, load_head, save_head
from .prompt_files import (
    DEFAULT_LANGUAGE,
    load_classnames,
    load_templates,
    packaged_sources,
)
from .waffle import WAFFLE_FORMAT, vocabulary_words, waffle_descriptors, waffle_shape

__all__ = [
    "DCLIP_FORMAT",
    "DEFAULT_LANGUAGE",
    "WAFFLE_FORMAT",
    "Head",
    "HeadEnsemble",
    "ZeroShotHead",
    "average_weights",
    "build_classifier",
    "cupl_head",
    "descriptor_head",
    "descriptor_prompts",
    "descriptor_sentence",
    "encode_prompt_sets",
    "load_class_prompts",
    "load_classnames",
    "load_descriptors",
    "load_head",
    "load_templates",
    "packaged_sources",
    "save_head",
    "template_head",
    "vocabulary_words",
    "waffle_descriptors",
    "waffle_head",
    "waffle_shape",
]
