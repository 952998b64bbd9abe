"""Class weights from prompts: encode each prompt, L2-normalise, average per class, renormalise.

Averaging the normalised embeddings of several templates ("a photo of a {}.", "a drawing of a
{}.") is CLIP's prompt ensemble; it is worth several points of accuracy over one template.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..models import CLIP

Tokenizer = Callable[[Sequence[str]], torch.Tensor]


@torch.no_grad()
def encode_texts(
    model: CLIP, tokenizer: Tokenizer, texts: Sequence[str], *, batch_size: int = 256
) -> torch.Tensor:
    """Normalised text embeddings (N, D), computed in batches on the model's device."""
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size])).to(device)
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(chunks)


def build_classifier(
    model: CLIP,
    tokenizer: Tokenizer,
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """Zero-shot weights (C, D): rows are unit-norm class embeddings; ``logits = f @ W.T``."""
    if not classnames or not templates:
        raise ValueError("a zero-shot classifier needs at least one class name and one template")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"templates must contain '{{}}' for the class name: {bad[:3]}")
    was_training = model.training
    model.eval()
    prompts = [template.format(name) for name in classnames for template in templates]
    embeddings = encode_texts(model, tokenizer, prompts, batch_size=batch_size)  # (C*T, D)
    embeddings = embeddings.view(len(classnames), len(templates), -1).mean(dim=1)  # (C, D)
    model.train(was_training)
    return F.normalize(embeddings, dim=-1)
