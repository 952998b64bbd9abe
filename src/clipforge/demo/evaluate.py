"""What the demo measures on the shapes world: zero-shot shape and colour accuracy (with
confusion matrices), held-out colour-shape pairs, caption-to-image retrieval, word order.

Every view is rendered from the ``val``/``heldout`` splits, which share no sample with training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from ..data.shapes import (
    ZEROSHOT_TEMPLATES,
    ShapesClassification,
    ShapesWorld,
    canonical_caption,
    word_order_probe,
)
from ..models import CLIP
from ..tokenizer import Tokenizer
from ..zeroshot import build_classifier, encode_texts


@dataclass
class EvalSizes:
    classification: int = 1000
    heldout: int = 800
    retrieval: int = 1000
    probe: int = 500


@dataclass
class ShapesEval:
    """Figures plus the raw material of the report's plots."""

    metrics: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)
    classnames: dict[str, Sequence[str]] = field(default_factory=dict)
    retrieval_examples: list[tuple[str, list[Image.Image], list[bool]]] = field(
        default_factory=list
    )


def to_pixels(images: Sequence[Image.Image]) -> torch.Tensor:
    """Normalised (N, 3, S, S) from RGB images already at the model's size."""
    array = torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in images]))
    pixels = array.permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


@torch.no_grad()
def encode_images(
    model: CLIP, images: Sequence[Image.Image], batch_size: int = 256
) -> torch.Tensor:
    device = next(model.parameters()).device
    out = [F.normalize(model.encode_image(to_pixels(images[i : i + batch_size]).to(device)).float(), dim=-1)
           for i in range(0, len(images), batch_size)]  # fmt: skip
    return torch.cat(out)


def _classify(
    model, dataset: ShapesClassification, weights: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of ``dataset`` against class embeddings ``weights`` (C, D)."""
    images = [dataset.world.render(dataset.scene(i)) for i in range(len(dataset))]
    labels = np.array([dataset.label(i) for i in range(len(dataset))])
    predictions = (encode_images(model, images) @ weights.T).argmax(-1).cpu().numpy()
    return labels, predictions


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def evaluate_shapes(
    model: CLIP, world: ShapesWorld, tokenizer: Tokenizer, sizes: EvalSizes | None = None
) -> ShapesEval:
    sizes = sizes or EvalSizes()
    was_training = model.training
    model.eval()
    result = ShapesEval()
    for task in ("shape", "colour"):
        view = ShapesClassification(world, task=task, split="val", size=sizes.classification)
        weights = build_classifier(model, tokenizer, view.classnames, ZEROSHOT_TEMPLATES[task])
        labels, predictions = _classify(model, view, weights)
        result.metrics[f"zeroshot_{task}_acc"] = float((labels == predictions).mean())
        result.confusion[task] = confusion_matrix(labels, predictions, len(view.classnames))
        result.classnames[task] = list(view.classnames)

    # Which of the 80 colour-shape captions matches an object whose pair was never trained on.
    heldout = ShapesClassification(world, task="heldout_pair", size=sizes.heldout)
    weights = encode_texts(model, tokenizer, heldout.class_captions)
    labels, predictions = _classify(model, heldout, weights)
    result.metrics["heldout_pair_acc"] = float((labels == predictions).mean())

    result.metrics.update(_retrieval(model, world, tokenizer, sizes.retrieval, result))
    probe = word_order_probe(world, n=sizes.probe)
    image_features = encode_images(model, [p.image for p in probe])
    correct = encode_texts(model, tokenizer, [p.correct for p in probe])
    swapped = encode_texts(model, tokenizer, [p.swapped for p in probe])
    wins = (image_features * correct).sum(-1) > (image_features * swapped).sum(-1)
    result.metrics["word_order_acc"] = float(wins.float().mean())
    model.train(was_training)
    return result


def _retrieval(model, world, tokenizer, n: int, result: ShapesEval, k: int = 5) -> dict[str, float]:
    """Caption -> image recall@k on ``n`` val pairs, by each scene's canonical caption.

    A hit is the query's own image in the top k. Several val scenes can share a caption
    ("a red circle"), so recall by identity is a lower bound of what a user would call right.
    """
    scenes = [world.scene("val", i) for i in range(n)]
    images = [world.render(s) for s in scenes]
    captions = [canonical_caption(s) for s in scenes]
    similarity = encode_texts(model, tokenizer, captions) @ encode_images(model, images).T  # (n, n)
    top = similarity.topk(k, dim=-1).indices  # (n, k)
    hits = (top == torch.arange(n).unsqueeze(1)).any(-1)
    top1 = similarity.argmax(-1) == torch.arange(n)
    for query in range(0, n, max(1, n // 6))[:6]:
        ranked = top[query].tolist()
        matches = [captions[i] == captions[query] for i in ranked]
        result.retrieval_examples.append((captions[query], [images[i] for i in ranked], matches))
    return {f"retrieval_text_to_image_recall@{k}": float(hits.float().mean()),
            "retrieval_text_to_image_recall@1": float(top1.float().mean())}  # fmt: skip


def shapes_eval_fn(seed: int, sizes: EvalSizes | None = None) -> Callable[[CLIP], dict[str, float]]:
    """A periodic-evaluation hook for the trainer: the shapes-world metrics of a model.
    It pickles (a partial of a module-level function), so ``run.processes`` workers can run it."""
    sizes = sizes or EvalSizes(classification=300, heldout=160, retrieval=300, probe=100)
    return partial(_evaluate_periodically, seed=seed, sizes=sizes)


def _evaluate_periodically(model: CLIP, *, seed: int, sizes: EvalSizes) -> dict[str, float]:
    world = ShapesWorld(seed=seed, image_size=model.image_size)
    tokenizer = Tokenizer(context_length=model.context_length)
    return evaluate_shapes(model, world, tokenizer, sizes).metrics
