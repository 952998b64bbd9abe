"""Turning a query (text or image) into the unit vector an index is searched with.

One :class:`QueryEncoder` holds a model with its inference transform and tokenizer; the server
builds one per distinct ``(model, pretrained)`` and shares it between the indices that embedded
with the same model, so serving five indices of one collection family costs one model's memory.
"""

from __future__ import annotations

import functools
import logging
import os
import threading

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clipforge.api import create_model_and_transforms, get_tokenizer
from clipforge.models.digest import weights_digest

logger = logging.getLogger(__name__)


class QueryEncoder:
    """Encodes one text or one image at a time into an L2-normalised float32 ``(D,)`` vector."""

    def __init__(
        self,
        model: str | os.PathLike,
        pretrained: str | os.PathLike | None = None,
        device: str = "cpu",
    ) -> None:
        self.spec = (str(model), None if pretrained is None else str(pretrained))
        self.device = torch.device(device)
        net, _, transform = create_model_and_transforms(model, pretrained, device=device)
        self.model = net.eval()
        self.transform = transform
        self.tokenizer = get_tokenizer(net)
        self.dim = int(net.config.embed_dim)
        self.context_length = int(net.context_length)
        # Word caches in the tokenizer are plain dicts; one lock keeps concurrent requests from
        # racing on them. Encoding itself runs outside it.
        self._tokenize_lock = threading.Lock()
        logger.info("loaded query model %s (pretrained=%s), dim %d", *self.spec, self.dim)

    @functools.cached_property
    def weights_digest(self) -> str:
        """The hash ``embed_collection`` records in ``embed_info.json`` (weights_blake2b)."""
        return weights_digest(self.model)

    def encode_text(self, text: str) -> tuple[np.ndarray, bool]:
        """``(vector (D,), truncated)``: ``truncated`` when the text has more BPE tokens than
        the model's context holds (it keeps the first ``context_length - 2``)."""
        with self._tokenize_lock:
            truncated = len(self.tokenizer.encode(text)) > self.context_length - 2
            tokens = self.tokenizer(text).to(self.device)  # (1, L)
        with torch.inference_mode():
            features = self.model.encode_text(tokens)  # (1, D)
        return _unit(features), truncated

    def encode_image(self, image: Image.Image) -> np.ndarray:
        """Vector ``(D,)`` of a decoded PIL image, preprocessed as the collection was."""
        pixels = self.transform(image).unsqueeze(0).to(self.device)  # (1, 3, S, S)
        with torch.inference_mode():
            features = self.model.encode_image(pixels)  # (1, D)
        return _unit(features)


def _unit(features: torch.Tensor) -> np.ndarray:
    """(1, D) features -> L2-normalised float32 numpy (D,)."""
    return F.normalize(features.float(), dim=-1)[0].cpu().numpy()
