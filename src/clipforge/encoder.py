"""One encoder for every caller that turns images or texts into features.

Evaluation, batch embedding, the query server and zero-shot prompts all run a model over
images and texts; they differ only in how inputs arrive and what happens to the features.
:class:`Encoder` holds what must agree between them for their features to agree: the model on
its device at one :class:`~clipforge.precision.Precision`, the tokenizer and the inference
transform. Features come back as float32, L2-normalised unless the caller asks otherwise, on
the CPU unless the caller keeps them on the device.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .distributed import resolve_device
from .models import CLIP, create_model, list_models
from .models.digest import weights_digest
from .precision import Precision, resolve_precision
from .progress import progress_bar
from .tokenizer import get_tokenizer
from .transforms import image_transform

log = logging.getLogger(__name__)

Tokenizer = Callable[[Sequence[str]], torch.Tensor]
Batch = TypeVar("Batch")
# The precision a model already is in, for an encoder that must not cast the caller's model.
_PRECISION_OF_DTYPE = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class Encoder:
    """A model ready to encode: device, precision, tokenizer, transform and batching.

    ``precision`` is a name of :mod:`clipforge.precision`; the model's weights are cast to its
    weight dtype (in place, as ``Module.to`` does). ``None`` keeps the model as it is: its
    dtype names the precision, with no autocast. ``device`` ``None`` keeps the model where it
    is. ``batch_size`` bounds every forward pass; ``workers`` decode in :meth:`loader`;
    ``progress`` shows a rich bar in :meth:`stream`.
    """

    def __init__(
        self,
        model: CLIP,
        *,
        precision: str | None = None,
        device: str | torch.device | None = None,
        tokenizer: Tokenizer | None = None,
        batch_size: int = 256,
        workers: int = 0,
        progress: bool = False,
    ) -> None:
        parameter = next(model.parameters())
        self.device = parameter.device if device is None else torch.device(device)
        if precision is None:
            precision = _PRECISION_OF_DTYPE[parameter.dtype]
        self.precision: Precision = resolve_precision(precision, self.device)
        self.model = model.to(self.device, dtype=self.precision.weight_dtype)
        self.tokenizer = tokenizer if tokenizer is not None else get_tokenizer(model)
        self.transform = image_transform(model.image_size, is_train=False)
        self.batch_size = batch_size
        self.workers = workers
        self.progress = progress
        self.spec: tuple[str, str | None] | None = None
        self.weights_digest: str | None = None
        # The tokenizer's word caches are plain dicts; one lock keeps concurrent server requests
        # from racing on them. Encoding itself runs outside it.
        self._tokenize_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        model: str | os.PathLike,
        pretrained: str | os.PathLike | None = None,
        *,
        precision: str = "fp32",
        device: str | torch.device | None = None,
        digest: bool = True,
        **options: object,
    ) -> Encoder:
        """``model``/``pretrained`` from :func:`clipforge.create_model`, in eval mode, on
        ``device`` (``None``: ``cuda:LOCAL_RANK`` where CUDA is available, else the CPU).

        ``spec`` records ``(model, pretrained)``; ``weights_digest`` hashes the weights as read,
        before any cast, so the same checkpoint has one digest whatever precision encodes.
        ``digest=False`` skips that hash for a caller that tells weights apart otherwise
        (evaluation's cache, by the checkpoint file's fingerprint).
        """
        if pretrained is None and (str(model) in list_models() or str(model).endswith(".json")):
            # Random weights are almost always a forgotten --pretrained; their figures look like
            # a model's.
            log.warning(
                "model %r has random weights: no --pretrained was given, so its outputs say "
                "nothing about a trained model",
                str(model),
            )
        net = create_model(model, pretrained).eval()
        weights = weights_digest(net) if digest else None
        encoder = cls(net, precision=precision, device=resolve_device(device), **options)
        encoder.spec = (str(model), None if pretrained is None else str(pretrained))
        encoder.weights_digest = weights
        return encoder

    @property
    def dim(self) -> int:
        """Width D of the joint embedding space."""
        return int(self.model.config.embed_dim)

    @property
    def context_length(self) -> int:
        """Tokens per text, start and end included."""
        return int(self.model.context_length)

    @property
    def pin_memory(self) -> bool:
        """Whether decode workers should hand over pinned batches (only worth it for CUDA)."""
        return self.device.type == "cuda"

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval mode, no gradients, the precision's autocast. The mode is restored on exit, so
        a model in training can be encoded between steps (a model shared by threads, as
        :meth:`load` returns it, is in eval mode already and stays there)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self.precision.autocast():
                yield
        finally:
            self.model.train(was_training)

    def images(
        self, pixels: torch.Tensor, *, normalize: bool = True, on_device: bool = False
    ) -> torch.Tensor:
        """Features (B, D) of preprocessed ``pixels`` (B, 3, S, S), ``batch_size`` at a time."""
        with self._inference():
            chunks = [
                self.model.encode_image(
                    batch.to(self.device, self.precision.weight_dtype, non_blocking=True)
                )  # (b, D)
                for batch in pixels.split(self.batch_size)
            ]
        return self._finish(chunks, normalize, on_device)

    def pil_images(self, images: Sequence[Image.Image], **options: bool) -> torch.Tensor:
        """Features (B, D) of decoded images, preprocessed with the inference transform."""
        return self.images(torch.stack([self.transform(image) for image in images]), **options)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (T, L) of ``texts``; safe to call from several threads."""
        with self._tokenize_lock:
            return self.tokenizer(list(texts))

    def truncated(self, text: str) -> bool:
        """True when ``text`` has more BPE tokens than the context holds (the tokenizer keeps
        the first ``context_length - 2``)."""
        with self._tokenize_lock:
            return len(self.tokenizer.encode(text)) > self.context_length - 2

    def texts(
        self,
        texts: Sequence[str] | torch.Tensor,
        *,
        normalize: bool = True,
        on_device: bool = False,
    ) -> torch.Tensor:
        """Features (T, D) of strings or token ids (T, L), in batches of similar length.

        The text tower stops at the longest row's end-of-text token, so batching texts sorted
        by length wastes no compute on padding; the rows go back to their order after.
        """
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts)  # (T, L)
        order = torch.argsort(tokens.argmax(dim=-1), stable=True)  # EOT is the largest id
        with self._inference():
            chunks = [
                self.model.encode_text(tokens[rows].to(self.device))  # (b, D)
                for rows in order.split(self.batch_size)
            ]
        return self._finish(chunks, normalize, on_device, order=order)

    def _finish(
        self,
        chunks: list[torch.Tensor],
        normalize: bool,
        on_device: bool,
        order: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Concatenate float32 features (N, D), undo the batching ``order``, normalise, move."""
        if not chunks:
            return torch.zeros(0, self.dim, device=self.device if on_device else "cpu")
        features = torch.cat(chunks).float()  # (N, D)
        if order is not None:
            features = features[torch.argsort(order).to(features.device)]
        if normalize:
            features = F.normalize(features, dim=-1)
        return features if on_device else features.cpu()

    def loader(self, batches: Dataset) -> DataLoader:
        """A DataLoader that runs ``batches`` (a dataset that yields whole batches) in
        ``workers`` decode processes, so decoding overlaps encoding."""
        return DataLoader(
            batches, batch_size=None, num_workers=self.workers, pin_memory=self.pin_memory
        )

    def stream(
        self,
        batches: Iterable[Batch],
        *,
        pixels: Callable[[Batch], torch.Tensor | None],
        samples: Callable[[Batch], int],
        label: str,
        total: int | None = None,
        normalize: bool = True,
    ) -> Iterator[tuple[Batch, torch.Tensor | None]]:
        """``(batch, features)`` for each of ``batches`` as it arrives, under a progress bar.

        ``pixels(batch)`` picks the images to encode (``None``: nothing to encode in this
        batch); ``samples(batch)`` is how far the bar advances (skipped samples included);
        ``total`` is the number of samples expected (``None``: an open-ended counter).
        """
        done, start = 0, time.perf_counter()
        with progress_bar(label, total, enabled=self.progress) as update:
            for batch in batches:
                images = pixels(batch)
                features = None if images is None else self.images(images, normalize=normalize)
                yield batch, features
                done += samples(batch)
                # Samples per second: the throughput is what an embedding run is tuned by.
                update(done, f"{done / (time.perf_counter() - start):,.1f}/s")
