"""Class weights from prompts: encode each prompt, L2-normalise, average per class, renormalise.

Averaging the normalised embeddings of several templates ("a photo of a {}.", "a drawing of a
{}.") is CLIP's prompt ensemble; it is worth several points of accuracy over one template.
The same average over free-form per-class prompt lists is CuPL's class embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..encoder import Encoder


def encode_prompt_sets(
    encoder: Encoder, prompt_sets: Sequence[Sequence[str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed every class's prompts in eval mode: ``(embeddings (N, D), class_index (N,))``.

    ``prompt_sets[c]`` are the prompts of class ``c`` (any number, at least one);
    ``embeddings`` holds them all, unit-norm, in order, and ``class_index[n]`` is the class of
    row ``n``; both live on the model's device. The model's train/eval mode is restored
    afterwards.
    """
    if not prompt_sets:
        raise ValueError("a zero-shot head needs at least one class")
    for index, prompts in enumerate(prompt_sets):
        if not prompts:
            raise ValueError(f"class {index} has no prompts")
    flat = [prompt for prompts in prompt_sets for prompt in prompts]
    was_training = encoder.model.training
    encoder.model.eval()
    try:
        embeddings = encoder.texts(flat, on_device=True)  # (N, D)
    finally:
        encoder.model.train(was_training)
    counts = torch.tensor([len(prompts) for prompts in prompt_sets], device=embeddings.device)
    return embeddings, torch.repeat_interleave(counts)  # (N, D), (N,)


def class_means(
    embeddings: torch.Tensor, class_index: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Per-class mean (C, D) of the rows of ``embeddings`` (N, D), not renormalised."""
    sums = embeddings.new_zeros(num_classes, embeddings.shape[1])
    sums.index_add_(0, class_index, embeddings)  # (C, D)
    counts = torch.bincount(class_index, minlength=num_classes).to(embeddings.dtype)  # (C,)
    return sums / counts[:, None]
